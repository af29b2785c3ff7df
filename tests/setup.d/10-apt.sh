# Debian packages the tests use: graphviz renders `inspect --graph` to SVG/PNG.
j2k_apt_missing=()
command -v dot >/dev/null 2>&1 || j2k_apt_missing+=(graphviz)
if [ "${#j2k_apt_missing[@]}" -gt 0 ]; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${j2k_apt_missing[@]}" >/dev/null
fi
unset j2k_apt_missing
