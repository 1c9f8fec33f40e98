#!/usr/bin/env bash
# Four simulated engines and the gateway on this machine (Ctrl-C stops them all).
set -euo pipefail
trap 'kill 0' EXIT
for p in 8001 8002 8003 8004; do
  rastos sim-engine --port $p --model meta-llama/Llama-3.1-8B-Instruct --seed $p &
done
sleep 2
rastos serve --endpoints http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003,http://127.0.0.1:8004 \
  --port 8080 --debug-headers
