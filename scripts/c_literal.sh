# Sourced by the embed_*.sh scripts: text as C string literal pieces.
# Uses sh and awk only.

# c_lines [FINAL_NL]: stdin text -> indented C string literal pieces, one
# "..\n" piece per line; backslash, double quote, '?' (trigraphs), tab and CR
# are escaped. FINAL_NL=0 when the input does not end with a newline.
c_lines() {
    LC_ALL=C awk -v final_nl="$1" '
        # Character by character: gsub replacement escaping differs between
        # awk implementations (mawk, gawk, busybox).
        BEGIN { bs = sprintf("%c", 92) }
        function esc(s,    out, i, c) {
            out = ""
            for (i = 1; i <= length(s); i++) {
                c = substr(s, i, 1)
                if (c == bs) out = out bs bs
                else if (c == "\"") out = out bs "\""
                else if (c == "?") out = out bs "?"
                else if (c == "\t") out = out bs "t"
                else if (c == "\r") out = out bs "r"
                else out = out c
            }
            return out
        }
        { lines[NR] = $0 }
        END {
            if (NR == 0) { print "    \"\""; exit }
            for (i = 1; i <= NR; i++) {
                nl = (i < NR || final_nl == 1) ? "\\n" : ""
                printf "    \"%s%s\"\n", esc(lines[i]), nl
            }
        }'
}

# c_file FILE: the file's content as c_lines pieces, byte for byte (a last
# line without a newline stays without one).
c_file() {
    final=1
    if [ -s "$1" ] && [ -n "$(tail -c 1 "$1")" ]; then
        final=0
    fi
    c_lines "$final" < "$1"
}

# need_files FILE...: fails with a message unless every file is readable.
need_files() {
    for f in "$@"; do
        if [ ! -f "$f" ] || [ ! -r "$f" ]; then
            echo "$(basename "$0" .sh): cannot read '$f'" >&2
            exit 1
        fi
    done
}
