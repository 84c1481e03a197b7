#!/bin/sh
# Example external program for apps.external: the Muller-Brown energy and its gradient.
#
# usage: muller_brown.sh [INPUT [OUTPUT]]   (defaults input.txt, output.txt)
#
# INPUT holds "key = value" lines; "x" and "y" are required, "#" starts a comment.
# OUTPUT gets "key = value" lines: the x and y read (as the program understood them),
# energy, gx = dV/dx and gy = dV/dy, every number printed with %.17g (exact round trip).
# The output file appears only when everything succeeded; an input without x or y, or
# with a value that is not a number, exits 2 with a message on stderr.
# POSIX sh and awk only. The arithmetic follows apps.toy.muller_brown term by term
# (the same operations in the same order), so a Python reference can match it bit for bit.
set -eu
input=${1:-input.txt}
output=${2:-output.txt}
[ -r "$input" ] || { echo "muller_brown.sh: cannot read input file '$input'" >&2; exit 2; }

awk -v input="$input" '
function fail(message) { print "muller_brown.sh: " input ": " message > "/dev/stderr"; failed = 1; exit 2 }
function number(key, text) {
    if (text !~ /^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$/)
        fail("\"" key "\" is not a number: \"" text "\"")
    return text + 0
}
/^[ \t]*(#|$)/ { next }
{
    line = $0
    split_at = index(line, "=")
    if (split_at == 0) fail("line " NR " is not \"key = value\": \"" line "\"")
    key = substr(line, 1, split_at - 1); value = substr(line, split_at + 1)
    gsub(/^[ \t]+|[ \t]+$/, "", key); gsub(/^[ \t]+|[ \t]+$/, "", value)
    if (key == "x") { x = number(key, value); have_x = 1 }
    else if (key == "y") { y = number(key, value); have_y = 1 }
}
END {
    if (failed) exit 2
    if (!have_x) fail("no \"x = ...\" line")
    if (!have_y) fail("no \"y = ...\" line")
    split("-200 -100 -170 15", A, " "); split("-1 -1 -6.5 0.7", a, " ")
    split("0 0 11 0.6", b, " ");        split("-10 -10 -6.5 0.7", c, " ")
    split("1 0 -0.5 -1", x0, " ");      split("0 0.5 1.5 1", y0, " ")
    energy = 0; gx = 0; gy = 0
    for (k = 1; k <= 4; k++) {
        dx = x - x0[k]; dy = y - y0[k]
        e = A[k] * exp(a[k] * dx * dx + b[k] * dx * dy + c[k] * dy * dy)
        energy += e
        gx += e * (2 * a[k] * dx + b[k] * dy)
        gy += e * (b[k] * dx + 2 * c[k] * dy)
    }
    printf "x = %.17g\ny = %.17g\nenergy = %.17g\ngx = %.17g\ngy = %.17g\n", x, y, energy, gx, gy
}
' "$input" > "$output.partial" || { status=$?; rm -f "$output.partial"; exit "$status"; }
mv "$output.partial" "$output"
