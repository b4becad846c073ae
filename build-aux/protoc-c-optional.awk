# protoc-c (protobuf-c 1.4/1.5) refuses proto3 files with `optional` fields.
# This script prints a copy of one such file that protoc-c accepts and that
# has the same wire format:
#
#   - an optional field of a scalar, string, bytes or enum type becomes a
#     one-member oneof named like protoc's synthetic oneof, "_<field>":
#         optional int32 priority = 9;  ->  oneof _priority { int32 priority = 9; }
#     (presence stays explicit: in C, msg->_priority_case says whether the
#     field was sent and makes a zero value go on the wire);
#   - an optional field of a message type just loses the keyword: a message
#     field has presence anyway (a NULL pointer in C).
#
# Only the C code is built from the copy. Descriptor sets (reflection) and
# other languages use the original files.
#
# Usage: awk -v target=FILE -f protoc-c-optional.awk FILES...
# FILES are all the files of the package (enum names are collected from
# all of them); FILE is one of them, written to stdout. Exits non-zero on an
# `optional` line it does not understand, so nothing is silently dropped.
# POSIX awk (mawk, gawk, busybox).

BEGIN {
	n = split("double float int32 int64 uint32 uint64 sint32 sint64 fixed32 fixed64 " \
		"sfixed32 sfixed64 bool string bytes", list, " ")
	for (i = 1; i <= n; i++)
		scalar[list[i]] = 1
	lines = 0
	if (target == "") {
		print "protoc-c-optional.awk: -v target=FILE is required" > "/dev/stderr"
		failed = 1
		exit 1
	}
}

$1 == "enum" && NF >= 2 {
	name = $2
	sub(/\{.*/, "", name)
	enums[name] = 1
}

FILENAME == target {
	buf[++lines] = $0
}

END {
	if (failed)
		exit 1
	if (lines == 0) {
		print "protoc-c-optional.awk: " target " is not among the input files (or is empty)" > "/dev/stderr"
		exit 1
	}
	for (i = 1; i <= lines; i++) {
		line = buf[i]
		if (line !~ /^[ \t]*optional[ \t]/) {
			print line
			continue
		}
		indent = line
		sub(/[^ \t].*$/, "", indent)
		rest = line
		sub(/^[ \t]*optional[ \t]+/, "", rest)
		if (rest !~ /^[A-Za-z_.][A-Za-z0-9_.]*[ \t]+[A-Za-z_][A-Za-z0-9_]*[ \t]*=[ \t]*[0-9]+[ \t]*;[ \t]*(\/\/.*)?$/) {
			print target ":" i ": cannot rewrite: " line > "/dev/stderr"
			exit 1
		}
		type = rest
		sub(/[ \t].*$/, "", type)
		field = rest
		sub(/^[^ \t]+[ \t]+/, "", field)
		sub(/[ \t=].*$/, "", field)
		decl = rest
		sub(/;.*$/, ";", decl)
		comment = rest
		sub(/^[^;]*;[ \t]*/, "", comment)
		if (comment != "")
			comment = " " comment
		base = type
		sub(/^.*\./, "", base)
		if ((type in scalar) || (type !~ /^google\./ && (base in enums)))
			print indent "oneof _" field " { " decl " }" comment
		else
			print indent decl comment
	}
}
