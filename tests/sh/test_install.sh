#!/usr/bin/env bash
# dferc runs where it is installed (make install) and wherever its Lua
# files are copied (DFERC_PATH), not only in its build tree.
set -u
build=$(cd "$(dirname "${DFERC:-./dferc}")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if make -s -C "$build" install DESTDIR="$tmp/root" >"$tmp/install.log" 2>&1; then
  prefix=$(sed -n 's/^prefix = //p' "$build/Makefile")
  bin="$tmp/root$prefix/bin/dferc"
  out=$(LD_LIBRARY_PATH="$tmp/root$prefix/lib" "$bin" graph kind=finetune 2>&1)
  if [[ "$out" == *"84878343 parameters"* ]]; then echo "ok installed_program_finds_its_models"
  else echo "not ok installed_program_finds_its_models: $out"; fi
  [ -f "$tmp/root$prefix/share/dferc/models/mae_dfer.lua" ] && [ -f "$tmp/root$prefix/share/dferc/lua/dferc/nn.lua" ] \
    && echo "ok install_copies_lua_and_models" || echo "not ok install_copies_lua_and_models"
else
  echo "not ok make_install: $(tail -3 "$tmp/install.log")"
fi

# a copy of the Lua files elsewhere, named by DFERC_PATH
mkdir -p "$tmp/data"
cp -r "$DFERC_SRCDIR/lua" "$DFERC_SRCDIR/models" "$tmp/data/"
echo 'return {build = function() error("the copy was used") end}' >"$tmp/data/models/mae_dfer.lua"
out=$(DFERC_PATH="$tmp/nowhere:$tmp/data" "$build/dferc" graph 2>&1)
if [[ "$out" == *"the copy was used"* ]]; then echo "ok dferc_path_is_searched_first"
else echo "not ok dferc_path_is_searched_first: $out"; fi
