# shellcheck shell=bash
# Helpers the benchmarks share; sourced, not run.

# median: the median of the numbers on stdin, one per line (0 when there are none).
median() {
	sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# ratio A B: "A/Bx" with two decimals, or "-" when B is not a positive number.
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'
}
