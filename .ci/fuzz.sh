#!/usr/bin/env bash
# The fuzz targets of fuzz/ (cargo-fuzz, libFuzzer, nightly toolchain), each
# run for a bounded time from its committed seed corpus. Fails if any
# target finds a crash (a panic, a failed assertion, a stack overflow, a
# timeout or an out-of-memory); the input is kept under fuzz/artifacts/.
#
#   .ci/fuzz.sh [TARGET...]          (default: every target)
#
# FUZZ_SECONDS (default 15) is each target's run time: with the build, the
# six targets stay within about six minutes on a 2-core machine. Raise it
# to search longer (docs/testing.md). FUZZ_TOOLCHAIN (default nightly) is
# the toolchain; FUZZ_CARGO (default cargo) the cargo command, e.g.
# `flock /work/.cargo.lock cargo` on a machine whose builds share a lock
# (only the build runs under it, not the fuzzing).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-15}
toolchain=${FUZZ_TOOLCHAIN:-nightly}
read -r -a cargo <<<"${FUZZ_CARGO:-cargo}"
all=(ndjson_line instrument pack tile_path checkpoint add_checkpoint)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
  rustup toolchain install "$toolchain" --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  "${cargo[@]}" install cargo-fuzz --locked
fi

# Inside the main target directory (ignored by git); the fuzz build has
# flags of its own (coverage instrumentation), so it never shares artifacts
# with the normal build. No sanitizer: the workspace forbids unsafe code,
# and the C libraries underneath (SQLite, aws-lc) are not instrumented by
# it anyway; debug assertions and overflow checks are on.
target_dir=$PWD/target/fuzz
echo "fuzz: building ${targets[*]}"
build=(fuzz build --sanitizer none --debug-assertions --codegen-units 16 --target-dir "$target_dir")
if [ $# -eq 0 ]; then
  (cd fuzz && "${cargo[@]}" "+$toolchain" "${build[@]}")
else
  for t in "${targets[@]}"; do
    (cd fuzz && "${cargo[@]}" "+$toolchain" "${build[@]}" "$t")
  done
fi
bin_dir=$target_dir/x86_64-unknown-linux-gnu/release

# New inputs go to a scratch corpus, never into the committed seeds; the
# vault of the collection target lives in the scratch directory too
# (in memory where /dev/shm is writable, so fsync costs nothing).
scratch_root=/dev/shm
[ -d "$scratch_root" ] && [ -w "$scratch_root" ] || scratch_root=${TMPDIR:-/tmp}
scratch=$(mktemp -d "$scratch_root/postvault-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

failed=()
for t in "${targets[@]}"; do
  mkdir -p "$scratch/corpus/$t" "$scratch/tmp" fuzz/artifacts/"$t"
  echo "fuzz: $t for ${seconds}s"
  if TMPDIR=$scratch/tmp "$bin_dir/$t" "$scratch/corpus/$t" "fuzz/corpus/$t" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 \
    >"$scratch/$t.log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$scratch/$t.log" \
      | sed "s/^/fuzz: $t /" || true
  else
    tail -n 60 "$scratch/$t.log" >&2
    echo "fuzz: $t FAILED (input kept in fuzz/artifacts/$t/)" >&2
    failed+=("$t")
  fi
  rm -rf "$scratch/tmp"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, no crash"
