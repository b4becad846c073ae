#!/bin/sh
# bin2c.sh FILE NAME: prints a C file defining `const unsigned char NAME[]`
# and `const unsigned long NAME_len` with the bytes of FILE.
set -e
file=$1
name=$2
echo "/* generated from $(basename "$file"); do not edit */"
echo "const unsigned char ${name}[] = {"
od -An -v -tx1 "$file" | sed -e 's/  */ /g' -e 's/^ //' -e '/^$/d' -e 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'
echo "};"
echo "const unsigned long ${name}_len = sizeof ${name};"
