#!/bin/sh
# Counts to 10, a number a second, then exits: the client gets each number as a message,
# then Close 1000 "exit status 0". (websocketd's classic first example.)
for i in 1 2 3 4 5 6 7 8 9 10; do
  echo "$i"
  sleep "${COUNT_DELAY:-1}"
done
