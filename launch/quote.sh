# shellcheck shell=bash
# Sourced by the launch scripts: printing commands so they can be pasted into a shell.

# Quotes one word for a POSIX shell; plain words stay readable.
q() {
  local s=$1
  if [[ -n $s && $s =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
    printf '%s' "$s"
  else
    s=${s//\'/\'\\\'\'}
    printf "'%s'" "$s"
  fi
}

# Prints a command, one line, each word quoted as needed.
show() {
  local out="" a
  for a in "$@"; do out+="${out:+ }$(q "$a")"; done
  printf '%s\n' "$out"
}
