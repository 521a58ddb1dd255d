#!/bin/bash
# issue 16: utility of `default` on MNIST 10,000/2,000 (EfficientNet-Lite0) per transmission format
export OWSD_OPS_CACHE=/tmp/ops-lead OWSD_CACHE=/tmp/cache-channel OWSD_DATA_DIR=/work/shared/data OMP_NUM_THREADS=1
for fmt in float32 png8 jpeg:95 jpeg:75; do
  tag=${fmt/:/}
  [ -f /work/channel/$tag/results.json ] && continue
  echo "$fmt start $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/time -f "%e s wall %U s user %S s sys" nice -n 5 owsd run --dataset mnist --data-dir /work/shared/data \
     --cloud efficientnet-lite0 --seed 0 --train 10000 --test 2000 --transmit $fmt --threads 1 --quiet \
     --out /work/channel/$tag > /work/channel/$tag.log 2>&1
  echo "$fmt end $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg) rc=$?"; tail -1 /work/channel/$tag.log
done
