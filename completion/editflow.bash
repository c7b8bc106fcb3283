# bash completion for editflow(1): the command first, then that command's options, and values
# where the option has a fixed set (--auth, --format, --acceleration, --image-size, --progress)
# or names a file (-i) or a folder (-o). Installed as
# share/bash-completion/completions/editflow; or: source completion/editflow.bash
# The option lists follow the tables in lua/editflow/cli/init.lua.

_editflow() {
  local cur prev cmd i
  COMPREPLY=()
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD-1]}

  local common="-m --model --endpoint --base-url --auth --timeout --resubmit-unknown -q --quiet -v --verbose -h --help"
  # qwen's fields (the default model); `editflow edit -m ID --help` lists another model's
  local model="-n --num-images -s --image-size --steps -g --guidance -f --format --acceleration --no-safety-checker --set --inline --allow-fallbacks --no-store-io --output-lifetime"
  local sizes="square_hd square portrait_4_3 portrait_16_9 landscape_4_3 landscape_16_9"

  if [[ $COMP_CWORD -eq 1 ]]; then
    COMPREPLY=($(compgen -W "edit grid schema price status result cancel run help --help --version" -- "$cur"))
    return 0
  fi
  cmd=${COMP_WORDS[1]}

  # `run`: its own options, then the script (a .lua file), then whatever the script takes.
  if [[ $cmd == run ]]; then
    for ((i = 2; i < COMP_CWORD; i++)); do
      case ${COMP_WORDS[i]} in
        --progress) ((i++)) ;;
        -*) ;;
        *) COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;  # past SCRIPT: the script's args
      esac
    done
    if [[ $prev == --progress ]]; then
      COMPREPLY=($(compgen -W "auto live plain none" -- "$cur"))
    elif [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W "-h --help -q --quiet --json --progress --" -- "$cur"))
    else
      COMPREPLY=($(compgen -f -X '!*.lua' -- "$cur") $(compgen -d -- "$cur"))
    fi
    return 0
  fi

  # Values of the options that take one.
  case $prev in
    --auth) COMPREPLY=($(compgen -W "key bearer" -- "$cur")); return 0 ;;
    -f|--format) COMPREPLY=($(compgen -W "png jpeg" -- "$cur")); return 0 ;;
    --acceleration) COMPREPLY=($(compgen -W "none regular" -- "$cur")); return 0 ;;
    -s|--image-size) COMPREPLY=($(compgen -W "$sizes" -- "$cur")); return 0 ;;
    -i|--image) COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
    -o|--output) COMPREPLY=($(compgen -d -- "$cur")); return 0 ;;
    --images-var)
      if [[ $cur == *=* ]]; then
        COMPREPLY=($(compgen -f -P "${cur%%=*}=" -- "${cur#*=}"))
      fi
      return 0 ;;
    -p|--prompt|-m|--model|--endpoint|--base-url|--set|--output-lifetime|--timeout|-n|--num-images|--steps|-g|--guidance|--seed| \
    --negative-prompt|--name|--var|--zip|--seeds|--concurrency|--max-cost|--price)
      return 0 ;;  # free text: nothing to offer
  esac

  local opts
  case $cmd in
    edit)
      opts="-p --prompt -i --image -o --output $model --seed --negative-prompt --sync --name --json --no-journal $common" ;;
    grid)
      opts="-p --prompt -i --image --var --zip --images-var --seeds -o --output --name --negative-prompt $model --concurrency --dry-run --max-cost --partial --price $common" ;;
    status)
      opts="--no-logs $common" ;;
    result)
      opts="-o --output $common" ;;
    cancel)
      opts="$common" ;;
    schema|price)
      opts="--json $common" ;;
    *)
      return 0 ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  fi
  return 0
}
complete -o filenames -o bashdefault -F _editflow editflow
