# Debian's Chromium: the real browser the JupyterLab extension's test drives (Playwright, with
# this browser: Playwright's own browser downloads are not used).
if ! command -v chromium >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
export J2K_CHROMIUM="${J2K_CHROMIUM:-$(command -v chromium)}"
