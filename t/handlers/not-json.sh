#!/bin/sh
# An exec step handler for t/80-worker.t that ignores its input and prints
# something that is not JSON, with a note on stderr.
echo "this is { not json"
echo "not-json.sh: printed garbage on purpose" >&2
exit 0
