#!/bin/sh
# A line echo: each message the client sends arrives here as a line on stdin; each line
# written to stdout goes back as a message. Ends when the client closes (stdin ends).
while IFS= read -r line; do
  printf '%s\n' "$line"
done
