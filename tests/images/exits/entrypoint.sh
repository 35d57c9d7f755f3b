#!/bin/sh
# A worker that exits with status 3, $CRASH_AFTER seconds into each of its
# first $CRASH_STARTS starts (as one does while a queue it needs is down), and
# runs from then on. The count is a file of the container, so it survives
# `docker restart`.
starts=$(( $(cat /data/starts 2>/dev/null || echo 0) + 1 ))
echo "$starts" > /data/starts
if [ "$starts" -le "${CRASH_STARTS:-1}" ]; then
    sleep "${CRASH_AFTER:-0}"
    echo "worker: start $starts: cannot reach the queue, exiting with status 3" >&2
    exit 3
fi
echo "worker: start $starts: connected to the queue, working"
exec sleep 86400
