#!/usr/bin/env bash
# What the vendor's 1.0 upload tool does: create the drive, then for each 4 MiB chunk,
# one at a time, cut it with dd, gzip it, and POST it with curl. No retries, no parallelism, no
# zero skipping. Usage: EHURI=... EHAUTH=user:secret baseline-upload.sh FILE; prints the drive UUID.
set -euo pipefail
file=$1
chunk=4194304
size=$(stat -c %s "$file")
drive=$(printf 'name bench-baseline\nsize %s\n' "$size" |
  curl -sSf -u "$EHAUTH" -H 'Content-Type: text/plain' --data-binary @- "${EHURI}drives/create" |
  awk '$1 == "drive" { print $2 }')
chunks=$(( (size + chunk - 1) / chunk ))
for (( i = 0; i < chunks; i++ )); do
  dd if="$file" bs=$chunk skip=$i count=1 2>/dev/null | gzip -c |
    curl -sSf -X POST -u "$EHAUTH" -H 'Content-Type: application/octet-stream' -H 'Content-Encoding: gzip' \
      --data-binary @- "${EHURI}drives/$drive/write/$(( i * chunk ))" >/dev/null
done
echo "$drive"
