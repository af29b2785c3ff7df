# side by side: before (8e75cab) vs after (main), alternating, fixed cost of commands
B=${BEFORE:?the bin/ of a venv with the old checkout installed}
A=${AFTER:?the bin/ of a venv with this checkout installed}
NB=$(cd "$(dirname "$0")/../.." && pwd)/examples/weather_markers.ipynb
W=$(mktemp -d)
for i in 1 2 3 4 5 6 7 8 9; do
  for side in before after; do
    if [ $side = before ]; then P=$B; else P=$A; fi
    cd $W
    s=$(date +%s.%N); $P/jup2kub inspect $NB >/dev/null; e=$(date +%s.%N); echo "inspect $side $(echo "$e - $s" | bc)"
    s=$(date +%s.%N); $P/jup2kub build $NB -o $W/chart-$side-$i --no-images >/dev/null 2>&1; e=$(date +%s.%N); echo "build $side $(echo "$e - $s" | bc)"
    $P/jup2kub run $NB $W/r.ipynb --workdir $W/wd-$side >/dev/null 2>&1
    s=$(date +%s.%N); $P/jup2kub run $NB $W/r.ipynb --workdir $W/wd-$side >/dev/null 2>&1; e=$(date +%s.%N); echo "run-reused $side $(echo "$e - $s" | bc)"
    s=$(date +%s.%N); $P/jup2kub run $NB $W/r.ipynb --workdir $W/wd-$side --no-cache >/dev/null 2>&1; e=$(date +%s.%N); echo "run-nocache $side $(echo "$e - $s" | bc)"
  done
done
rm -rf $W
