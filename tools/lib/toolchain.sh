#!/usr/bin/env bash
# The one place that finds the Rust toolchain sockleak builds with; used by
# tools/setup (and so tools/run and tools/test), .ci/run and tools/bench/run.
#
# Why a search and not `command -v cargo`: rustup installs into
# ~/.cargo/bin and only a new login shell has it in PATH; under sudo,
# secure_path drops it and HOME is /root while the rustup is the user's; and
# Debian's own toolchain (rustc 1.63, cargo 1.65 on bookworm) is in PATH but
# too old to build this workspace. So it looks, in order, in PATH, $CARGO_HOME/bin,
# $HOME/.cargo/bin and, under sudo, ~$SUDO_USER/.cargo/bin, and takes the
# first cargo (and rustc beside it) that is at least the workspace's
# rust-version (read from Cargo.toml). An older one is never used: it is
# named in the message with the version needed.
#
# Sourced:   . tools/lib/toolchain.sh
#            sockleak_toolchain            # find; status 1 + message if none
#            sockleak_toolchain --install  # find, else install with rustup
#   Exports CARGO (absolute path), puts its directory first in PATH (rustc,
#   rustfmt, clippy come from the same toolchain) and, for a rustup found in
#   another home (sudo), RUSTUP_HOME.
# Executed:  tools/lib/toolchain.sh [--install] [--env]
#   Prints the cargo's path, or with --env CARGO=, PATH= and RUSTUP_HOME=
#   lines (for tools/bench/run). Exit 1 with the message when none is found.
#
# SOCKLEAK_NO_INSTALL=1 turns --install into a refusal (tools/selftest/
# toolchain uses it to check the refusal without touching the machine).

_sockleak_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# The rust-version of [workspace.package] in Cargo.toml ("1.89").
sockleak_rust_version() {
  sed -n '/^\[workspace\.package\]/,/^\[/s/^rust-version *= *"\([0-9.]*\)".*/\1/p' \
    "$_sockleak_root/Cargo.toml"
}

# _sockleak_ge A B: dotted version A >= B.
_sockleak_ge() {
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]
}

# _sockleak_version PROGRAM [RUSTUP_HOME]: "1.95.0" from `PROGRAM --version`
# ("cargo 1.95.0 (f2d3ce0bd 2026-03-21)"), empty when it does not run (a
# rustup proxy with no default toolchain).
_sockleak_version() {
  local out
  if [ -n "${2:-}" ]; then
    out=$(RUSTUP_HOME="$2" "$1" --version 2>/dev/null) || return 0
  else
    out=$("$1" --version 2>/dev/null) || return 0
  fi
  printf '%s\n' "$out" | awk 'NR == 1 { sub(/-.*/, "", $2); print $2 }'
}

# The rustup data that belongs to a cargo in DIR (…/.cargo/bin): the
# .rustup beside that .cargo, when RUSTUP_HOME is not set and it is not the
# default one ($HOME/.rustup), so a proxy found in another user's home
# uses that user's toolchains.
_sockleak_rustup_home_for() {
  local home
  [ -z "${RUSTUP_HOME:-}" ] || return 0
  home=$(dirname "$(dirname "$1")")
  case "$1" in */.cargo/bin) ;; *) return 0 ;; esac
  if [ -d "$home/.rustup" ] && [ "$home" != "${HOME:-}" ]; then
    printf '%s\n' "$home/.rustup"
  fi
}

# Candidate directories, in order, one per line (duplicates removed later).
_sockleak_candidates() {
  local c home
  c=$(command -v cargo 2>/dev/null) && [ -n "$c" ] && dirname "$c"
  [ -z "${CARGO_HOME:-}" ] || printf '%s\n' "$CARGO_HOME/bin"
  [ -z "${HOME:-}" ] || printf '%s\n' "$HOME/.cargo/bin"
  if [ -n "${SUDO_USER:-}" ]; then
    home=$(getent passwd "$SUDO_USER" 2>/dev/null | cut -d: -f6)
    [ -z "$home" ] || printf '%s\n' "$home/.cargo/bin"
  fi
}

# Sets _sockleak_found (dir), _sockleak_rustup (RUSTUP_HOME or empty) and
# _sockleak_seen (what was looked at, for the message). Status 1: none.
_sockleak_search() {
  local need dir seen="" v rv rh
  need=$(sockleak_rust_version)
  _sockleak_found="" _sockleak_rustup="" _sockleak_seen=""
  command -v cargo >/dev/null 2>&1 || _sockleak_seen=$'\n'"  PATH ($PATH): no cargo"
  while IFS= read -r dir; do
    case " $seen " in *" $dir "*) continue ;; esac
    seen="$seen $dir"
    if [ ! -x "$dir/cargo" ]; then
      _sockleak_seen="$_sockleak_seen"$'\n'"  $dir: no cargo"
      continue
    fi
    rh=$(_sockleak_rustup_home_for "$dir")
    v=$(_sockleak_version "$dir/cargo" "$rh")
    if [ -z "$v" ]; then
      _sockleak_seen="$_sockleak_seen"$'\n'"  $dir/cargo: does not run (\`$dir/cargo --version\` failed)"
      continue
    fi
    # rustc beside cargo is the one cargo will run (PATH gets this
    # directory first); a newer cargo with an old rustc is no better.
    rv=$v
    if [ -x "$dir/rustc" ]; then rv=$(_sockleak_version "$dir/rustc" "$rh"); fi
    if ! _sockleak_ge "$v" "$need" || ! _sockleak_ge "${rv:-0}" "$need"; then
      _sockleak_seen="$_sockleak_seen"$'\n'"  $dir/cargo: cargo $v, rustc ${rv:-?}: older than $need"
      continue
    fi
    _sockleak_found=$dir _sockleak_rustup=$rh
    _sockleak_seen="$_sockleak_seen"$'\n'"  $dir/cargo: cargo $v: used"
    return 0
  done < <(_sockleak_candidates)
  return 1
}

_sockleak_refuse() {
  local need
  need=$(sockleak_rust_version)
  {
    echo "toolchain: no Rust toolchain >= $need found (rust-version in Cargo.toml); looked at:$_sockleak_seen"
    echo "  ${1:-Install a current one with rustup (tools/setup does: https://rustup.rs), or put one first in PATH.}"
  } >&2
}

_sockleak_export() {
  CARGO="$_sockleak_found/cargo"
  export CARGO
  case ":$PATH:" in
    ":$_sockleak_found:"*) ;;
    *) PATH="$_sockleak_found:$PATH" ;;
  esac
  export PATH
  if [ -n "$_sockleak_rustup" ]; then
    RUSTUP_HOME=$_sockleak_rustup
    export RUSTUP_HOME
  fi
}

sockleak_toolchain() {
  local install=""
  [ "${1:-}" != "--install" ] || install=1
  if _sockleak_search; then
    _sockleak_export
    return 0
  fi
  if [ -z "$install" ]; then
    _sockleak_refuse
    return 1
  fi
  if [ "${SOCKLEAK_NO_INSTALL:-}" = "1" ]; then
    _sockleak_refuse "Not installing one: SOCKLEAK_NO_INSTALL=1."
    return 1
  fi
  # A rustup of ours whose toolchain is too old: updating it is the user's
  # call (it changes their default), so say how instead of doing it.
  if [ -x "${CARGO_HOME:-${HOME:-/nonexistent}/.cargo}/bin/rustup" ]; then
    _sockleak_refuse "rustup is installed but its toolchain is too old: run \`rustup update stable\`."
    return 1
  fi
  if ! command -v curl >/dev/null 2>&1; then
    _sockleak_refuse "Cannot install one: no curl (apt-get install curl ca-certificates)."
    return 1
  fi
  echo "toolchain: installing Rust with rustup (https://rustup.rs) into ${CARGO_HOME:-$HOME/.cargo}" >&2
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
    sh -s -- -y --profile minimal -c rustfmt,clippy >&2 || {
    _sockleak_refuse "The rustup install failed (see above)."
    return 1
  }
  if _sockleak_search; then
    _sockleak_export
    return 0
  fi
  _sockleak_refuse "rustup ran but left no usable cargo."
  return 1
}

# Executed rather than sourced.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  env_out="" install_arg=""
  for arg in "$@"; do
    case "$arg" in
      --env) env_out=1 ;;
      --install) install_arg=--install ;;
      *) echo "usage: $0 [--install] [--env]" >&2; exit 2 ;;
    esac
  done
  sockleak_toolchain $install_arg || exit 1
  if [ -n "$env_out" ]; then
    printf 'CARGO=%s\nPATH=%s\n' "$CARGO" "$PATH"
    [ -z "${RUSTUP_HOME:-}" ] || printf 'RUSTUP_HOME=%s\n' "$RUSTUP_HOME"
  else
    printf '%s\n' "$CARGO"
  fi
fi
