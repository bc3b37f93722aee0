#!/usr/bin/env bash
# What the vendor's 1.0 download tool does: read the size from info, then one read per
# 4 MiB chunk, one at a time, appended to the file.
# Usage: EHURI=... EHAUTH=user:secret baseline-download.sh DRIVE FILE
set -euo pipefail
drive=$1
file=$2
chunk=4194304
size=$(curl -sSf -u "$EHAUTH" "${EHURI}drives/$drive/info" | awk '$1 == "size" { print $2 }')
: > "$file"
for (( offset = 0; offset < size; offset += chunk )); do
  curl -sSf -u "$EHAUTH" "${EHURI}drives/$drive/read/$offset/$chunk" >> "$file"
done
