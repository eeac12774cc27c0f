#!/bin/sh
# Emits one JSON object a second (5 in all): a sequence number, the time, the load average,
# and who the client is, from the CGI environment websockd sets (REMOTE_ADDR, QUERY_STRING).
for n in 1 2 3 4 5; do
  read -r load1 _ < /proc/loadavg 2>/dev/null || load1=null
  printf '{"seq":%d,"time":"%s","load1":%s,"client":"%s","query":"%s"}\n' \
    "$n" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$load1" "$REMOTE_ADDR" "$QUERY_STRING"
  sleep "${JSON_DELAY:-1}"
done
