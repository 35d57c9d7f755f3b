#!/bin/sh
# Healthy for $HEALTHY_FOR seconds after the first start, then wedged for good:
# /www/health goes away, and as a file of the container it stays gone across
# restarts, like state a restart does not repair.
if [ ! -e /www/.wedged ]; then
    echo ok > /www/health
    (sleep "${HEALTHY_FOR:-1}"; rm -f /www/health; touch /www/.wedged) &
fi
exec httpd -f -p 8080 -h /www
