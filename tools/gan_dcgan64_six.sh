#!/bin/bash
# The DCGAN-64 doppel-vs-PyTorch comparison of docs/gan.md: 3 seeds x (doppel, PyTorch) on CelebA,
# all six at once (a machine with >= 6 free cores), 1 thread each, then the same `doppel gan eval`
# (FID-faces-doppelenc, spectral distance, precision/recall, n = 1000) for all six, at the last step
# every run reached (normally N; checkpoints every 25 steps are kept in case the time limit TL stops one).
#   tools/gan_dcgan64_six.sh N TL     e.g. tools/gan_dcgan64_six.sh 150 380
# Environment: D (folder with doppel, celeba/, faceenc-f32.safetensors, peers/models.py, lib/),
# W (work folder, default /tmp/w), OUT (where the result archives go), BIN, DATA, PY, EVN.
# Then, here: tools/gan_compare.py --doppel W/d64-s{1,2,3} --torch W/t64-s{1,2,3} --html compare64.html
N=$1; TL=$2
R=$PWD; D=${D:-$R/runs/g64/dev}; W=${W:-/tmp/w}; mkdir -p $W
export W LD_LIBRARY_PATH=$D/lib OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1 PYTHONPATH=$D/peers
BIN=${BIN:-$D/doppel}; DATA=${DATA:-$D/celeba}; PY=${PY:-python3}
{ nproc; lscpu | grep -E "Model name|^CPU\(s\)"; uptime; $BIN version; $PY -c 'import torch; print("torch", torch.__version__)'; } > $W/env.txt 2>&1
cat $W/env.txt
# keep each doppel checkpoint (hard links: doppel renames a new file over ckpt.safetensors)
$PY - <<'PY' > $W/watch.log 2>&1 &
import json, os, struct, time
W = os.environ.get("W", "/tmp/w")
seen = {}
while True:
    for s in (1, 2, 3):
        p = f"{W}/d64-s{s}/ckpt.safetensors"
        try:
            st = os.stat(p)
            if seen.get(s) == st.st_ino: continue
            with open(p, "rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]; step = int(json.loads(f.read(n))["__metadata__"]["doppel.gan.step"])
            q = f"{W}/d64-s{s}/ckpt-step{step:06d}.safetensors"
            if not os.path.exists(q): os.link(p, q); print(s, step, time.time(), flush=True)
            seen[s] = st.st_ino
        except Exception as e:
            pass
    time.sleep(0.5)
PY
wpid=$!
t0=$(date +%s); pids=""
for s in 1 2 3; do
  ( TIMEFORMAT="wall %R user %U sys %S"; time timeout $TL $BIN gan train --data $DATA --arch dcgan64 --batch 64 --steps $N --seed $s \
      --threads 1 --flip --out $W/d64-s$s --sample-every 25 --ckpt-every 25 --quiet ) > $W/d64-s$s.log 2>&1 &
  pids="$pids $!"
  ( TIMEFORMAT="wall %R user %U sys %S"; time timeout $TL $PY $R/tools/gan_torch_train.py --arch dcgan64 --data $DATA --steps $N \
      --batch 64 --seed $s --threads 1 --flip --n 1000 --sample-every 25 --ckpt-every 25 --out $W/t64-s$s ) > $W/t64-s$s.log 2>&1 &
  pids="$pids $!"
done
sleep ${PEEK:-60}; echo "after ${PEEK:-60} s:"; for s in 1 2 3; do tail -c 300 $W/t64-s$s.log; echo; cat $W/watch.log; done
wait $pids
echo "training done after $(( $(date +%s) - t0 )) s"
sleep 1; kill $wpid
# the last step every run reached
M=$N
for s in 1 2 3; do
  if [ ! -f $W/t64-s$s/G.pt ]; then
    last=$(ls $W/t64-s$s/G_step*.pt 2>/dev/null | sort | tail -1 | sed 's/.*G_step0*//; s/\.pt//'); M=$(( ${last:-0} < M ? ${last:-0} : M ))
  fi
  if [ ! -f $W/d64-s$s/ckpt-step$(printf %06d $N).safetensors ]; then
    last=$(ls $W/d64-s$s/ckpt-step*.safetensors 2>/dev/null | sort | tail -1 | sed 's/.*ckpt-step0*//; s/\.safetensors//'); M=$(( ${last:-0} < M ? ${last:-0} : M ))
  fi
done
echo "evaluating at step $M"; echo $M > $W/eval_step.txt
EV="$BIN gan eval --data $DATA --features $D/faceenc-f32.safetensors -n ${EVN:-1000} --threads 1 --json"
for s in 1 2 3; do
  T=$W/t64-s$s; GP=$T/G.pt; [ $M -ne $N ] && GP=$T/G_step$(printf %06d $M).pt
  $PY $R/tools/gan_torch_to_doppel.py --arch dcgan64 --step $M $GP $T/G.safetensors
  if [ $M -eq $N ]; then ( $EV --model $W/d64-s$s > $W/d64-s$s/eval.stdout.json 2> $W/d64-s$s/eval.err ) &
  else ( $EV --model $W/d64-s$s/ckpt-step$(printf %06d $M).safetensors > $W/d64-s$s/eval.json 2> $W/d64-s$s/eval.err ) & fi
  ( $EV --model $T/G.safetensors > $T/eval.json 2> $T/eval.err ) &
done
wait
echo "eval done after $(( $(date +%s) - t0 )) s"
for s in 1 2 3; do echo "d$s $(head -c 400 $W/d64-s$s/eval.json)"; echo "t$s $(head -c 400 $W/t64-s$s/eval.json)"; done
for s in 1 2 3; do $BIN gan report --run $W/t64-s$s > /dev/null 2>&1; done
cd $W
tar czf $OUT/d64.tgz --exclude='*.safetensors' --exclude='report.html' d64-s* env.txt watch.log eval_step.txt
tar czf $OUT/t64.tgz --exclude='*.pt' --exclude='png' --exclude='report.html' --exclude='G.safetensors' t64-s*
tar czf $OUT/drep.tgz d64-s*/report.html 2>/dev/null
tar czf $OUT/trep.tgz t64-s*/report.html 2>/dev/null
ls -la $OUT
