#!/usr/bin/env bash
# Fetch the web form's front-end assets from the npm registry (`npm pack`: the published
# tarball, checked against the registry's integrity hash by npm) and copy only the files the
# page loads into app/web/static/vendor/. The result is committed, so the page works offline
# and no CDN is ever contacted; rerun this only to change a version. Needs node and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=app/web/static/vendor
KATEX=katex@0.16.29        # the long-lived 0.16 line, the one KaTeX's documentation describes
HTMX=htmx.org@2.0.11       # htmx 2.x (4.x is a new major with a changed API)
CHARTJS=chart.js@4.5.1     # Chart.js 4.x, floating horizontal bars serve as the Gantt chart
SWAGGER=swagger-ui-dist@5.35.0  # the API's /docs page (FastAPI would load it from a CDN)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$DEST"
mkdir -p "$DEST/katex/fonts" "$DEST/htmx" "$DEST/chartjs" "$DEST/swagger-ui"

{
  echo "# Vendored front-end assets"
  echo
  echo "Written by \`scripts/vendor_web_assets.sh\` from the npm registry (\`npm pack\`); do not edit."
  echo "Only the files the page loads are kept. Each directory holds the package's LICENSE."
  echo
  echo "| package | version | license | tarball | integrity |"
  echo "|---|---|---|---|---|"
} > "$work/VENDOR.md"

fetch() {  # fetch <name@version> <dir>: unpack the tarball into $work/<dir>, note it in VENDOR.md
  local spec=$1 dir=$2
  (cd "$work" && npm pack --silent --json "$spec" > "$dir.json")
  local file name version integrity url license
  file=$(node -e 'console.log(require(process.argv[1])[0].filename)' "$work/$dir.json")
  name=$(node -e 'console.log(require(process.argv[1])[0].name)' "$work/$dir.json")
  version=$(node -e 'console.log(require(process.argv[1])[0].version)' "$work/$dir.json")
  integrity=$(node -e 'console.log(require(process.argv[1])[0].integrity)' "$work/$dir.json")
  url=$(npm view --silent "$spec" dist.tarball)
  mkdir -p "$work/$dir"
  tar -xzf "$work/$file" -C "$work/$dir"
  license=$(node -e 'console.log(require(process.argv[1]).license)' "$work/$dir/package/package.json")
  echo "| $name | $version | $license | $url | \`$integrity\` |" >> "$work/VENDOR.md"
}

fetch "$KATEX" katex
cp "$work/katex/package/dist/katex.min.js" "$work/katex/package/dist/katex.min.css" "$DEST/katex/"
cp "$work/katex/package/dist/fonts/"*.woff2 "$DEST/katex/fonts/"
cp "$work/katex/package/LICENSE" "$DEST/katex/LICENSE"

fetch "$HTMX" htmx
cp "$work/htmx/package/dist/htmx.min.js" "$DEST/htmx/"
cp "$work/htmx/package/LICENSE" "$DEST/htmx/LICENSE"

fetch "$CHARTJS" chartjs
cp "$work/chartjs/package/dist/chart.umd.min.js" "$DEST/chartjs/" 2>/dev/null \
  || cp "$work/chartjs/package/dist/chart.umd.js" "$DEST/chartjs/chart.umd.min.js"
cp "$work/chartjs/package/LICENSE.md" "$DEST/chartjs/LICENSE.md"

fetch "$SWAGGER" swagger
cp "$work/swagger/package/swagger-ui-bundle.js" "$work/swagger/package/swagger-ui.css" \
  "$work/swagger/package/favicon-32x32.png" "$DEST/swagger-ui/"
cp "$work/swagger/package/LICENSE" "$DEST/swagger-ui/LICENSE"
cp "$work/swagger/package/NOTICE" "$DEST/swagger-ui/NOTICE" 2>/dev/null || true

{
  echo
  echo "Files: \`katex/katex.min.js\`, \`katex/katex.min.css\`, \`katex/fonts/*.woff2\` (the CSS also"
  echo "names .woff and .ttf fallbacks; every browser that runs the page loads woff2),"
  echo "\`htmx/htmx.min.js\`, \`chartjs/chart.umd.min.js\`; for the API's \`/docs\` page,"
  echo "\`swagger-ui/swagger-ui-bundle.js\`, \`swagger-ui/swagger-ui.css\`, \`swagger-ui/favicon-32x32.png\`."
} >> "$work/VENDOR.md"
cp "$work/VENDOR.md" "$DEST/VENDOR.md"
echo "vendored into $DEST:"
find "$DEST" -type f | sort
