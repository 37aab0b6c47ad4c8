#!/usr/bin/env bash
# Fill build/image/wheels with wheels of Encore's dependencies (plus setuptools and wheel, to
# build Encore itself), so that the image build runs with --network none and PIP_NO_INDEX=1.
#
# pip runs inside the base image, not on the host: environment markers are evaluated by the
# interpreter that will run them (bookworm's python3 is 3.11.2, and redis needs async-timeout
# below 3.11.3; a host 3.11.7 would leave it out). It uses this host's pip configuration
# (`pip config list`: index URLs, find-links, constraints, CA bundle), with every local path it
# names mounted read-only, and the host's network. Skipped when pyproject.toml's dependencies are
# those of the last complete run. Usage: deploy/image/wheelhouse.sh BASE_IMAGE [PIP]
set -euo pipefail
cd "$(dirname "$0")/../.."

BASE=${1:?usage: wheelhouse.sh BASE_IMAGE [PIP]}
PIP=${2:-pip3}
OUT=build/image/wheels
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/image/containers.conf}

requirements=$(
  python3 - <<'PY'
import tomllib

with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["dependencies"]))
print("setuptools>=68")
print("wheel")
PY
)
if [[ -f $OUT/.complete && $(cat "$OUT/.complete") == "$requirements" ]]; then
  echo "wheelhouse $OUT is up to date ($(find "$OUT" -name '*.whl' | wc -l) wheels)"
  exit 0
fi

run_args=(--rm --network host --env PIP_DISABLE_PIP_VERSION_CHECK=1)
declare -A mounts=()
while IFS= read -r line; do
  key=${line%%=*}
  value=${line#*=}
  value=${value#\'}
  value=${value%\'}
  name=${key##*.}
  case $name in
    index-url | extra-index-url | find-links | constraint | cert | trusted-host | default-timeout) ;;
    *) continue ;;
  esac
  run_args+=(--env "PIP_$(tr 'a-z-' 'A-Z_' <<<"$name")=$value")
  for token in $value; do
    path=${token#file://}
    [[ $path == /* && -e $path ]] || continue
    # a file:// index's pages link to ../../files/…: mount the index's parent too
    [[ $token == file://* ]] && path=$(dirname "$path")
    mounts[$path]=1
  done
done < <("$PIP" config list 2>/dev/null)
for path in "${!mounts[@]}"; do
  run_args+=(--volume "$path:$path:ro")
done

rm -rf "$OUT"
mkdir -p "$OUT"
printf '%s\n' "$requirements" >"$OUT/requirements.txt"

echo "pip wheel in $BASE (its python3), from this host's pip configuration"
podman run "${run_args[@]}" --volume "$PWD/$OUT:/wheels" "$BASE" sh -ec '
  python3 -m venv /tmp/venv
  /tmp/venv/bin/pip wheel --quiet --no-cache-dir --wheel-dir /wheels -r /wheels/requirements.txt' \
  2> >(grep -v "WARNING: Location .* is ignored" >&2)
printf '%s' "$requirements" >"$OUT/.complete"
echo "wheelhouse $OUT: $(find "$OUT" -name '*.whl' | wc -l) wheels, $(du -sh "$OUT" | cut -f1)"
