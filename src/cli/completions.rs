//! `blat completions SHELL`: completion scripts for bash, zsh and fish,
//! generated from the clap definition (clap_complete), each with a small
//! addition that completes target names (`--target NAME`, `blat ssh
//! TARGET`) from the configuration: the script asks `blat completions
//! --targets`, with the `-c DIR` of the command line being completed. The
//! packaged copies in `contrib/completions/` are this output, kept in step
//! by a test (`BLAT_UPDATE_COMPLETIONS=1` rewrites them).

use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Print a shell completion script (bash, zsh or fish) on stdout
#[derive(Debug, Args)]
#[command(after_long_help = "\
Installing (the Debian package does this):
    blat completions bash > /usr/share/bash-completion/completions/blat
    blat completions zsh > /usr/share/zsh/vendor-completions/_blat
    blat completions fish > /usr/share/fish/vendor_completions.d/blat.fish
  Target names after --target and after blat ssh are completed from the configuration (the
  -c DIR of the command line being completed, else $BLAT_CONFIG, else /etc/blat), which
  blat completions --targets lists without parsing it.")]
pub struct CompletionsArgs {
    /// The shell to complete in: bash, zsh or fish
    #[arg(
        value_enum,
        required_unless_present = "targets",
        hide_possible_values = true
    )]
    pub shell: Option<Shell>,
    /// Print the configured target names instead, one a line (the scripts call this)
    #[arg(long)]
    pub targets: bool,
}

/// The script for `shell`: clap_complete's, with target names completed.
pub fn script(shell: Shell) -> String {
    let text = static_script(shell);
    match shell {
        Shell::Bash => bash(&text),
        Shell::Zsh => zsh(&text),
        Shell::Fish => fish(&text),
    }
}

/// `text` with `from` replaced by `to`; the replacement must happen (a
/// clap_complete that generates other text breaks the test, not a user's shell).
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "clap_complete output changed: {from:?} not found"
    );
    text.replace(from, to)
}

const BASH_TARGETS: &str = r#"
# Target names from the configuration, for --target NAME and `blat ssh
# TARGET`: blat completions --targets, with the -c DIR of the command line.
_blat_targets() {
    local i config=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            -c | --config) config=(--config "${COMP_WORDS[i + 1]}") ;;
            --config=*) config=(--config "${COMP_WORDS[i]#--config=}") ;;
        esac
    done
    "${COMP_WORDS[0]}" "${config[@]}" completions --targets 2>/dev/null
}

# `blat ssh TARGET`: the first word after ssh is a target; the rest is clap's.
_blat_with_targets() {
    local i word sub="" positional=0
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        case "$word" in
            -c | --config | --target) i=$((i + 1)) ;;
            -*) ;;
            *)
                if [[ -z "$sub" ]]; then
                    sub="$word"
                else
                    positional=$((positional + 1))
                fi
                ;;
        esac
    done
    if [[ "$sub" == ssh && $positional -eq 0 && "${COMP_WORDS[COMP_CWORD]}" != -* ]]; then
        COMPREPLY=($(compgen -W "$(_blat_targets)" -- "${COMP_WORDS[COMP_CWORD]}"))
        return 0
    fi
    _blat "$@"
}
"#;

fn bash(text: &str) -> String {
    let text = edit(
        text,
        "                --target)\n                    COMPREPLY=($(compgen -f \"${cur}\"))",
        "                --target)\n                    COMPREPLY=($(compgen -W \"$(_blat_targets)\" -- \"${cur}\"))",
    );
    let text = edit(
        &text,
        "complete -F _blat ",
        "complete -F _blat_with_targets ",
    );
    let at = text
        .find("\nif [[ \"${BASH_VERSINFO[0]}\" -eq 4")
        .expect("clap_complete's bash registration");
    format!("{}{BASH_TARGETS}{}", &text[..at], &text[at..])
}

const ZSH_TARGETS: &str = r#"
# Target names from the configuration, for --target NAME and `blat ssh
# TARGET`: blat completions --targets, with the -c DIR of the command line.
(( $+functions[_blat_targets] )) ||
_blat_targets() {
    local -a all config targets
    local i
    all=(${(z)BUFFER})
    for (( i = 2; i <= $#all; i++ )); do
        case $all[i] in
            (-c|--config) config=(--config "${(Q)all[i+1]}") ;;
            (--config=*) config=(--config "${(Q)all[i]#--config=}") ;;
        esac
    done
    targets=(${(f)"$(${(Q)all[1]:-blat} $config completions --targets 2>/dev/null)"})
    _describe -t targets 'target' targets
}
"#;

fn zsh(text: &str) -> String {
    let text = edit(text, ":NAME:_default'", ":NAME:_blat_targets'");
    let text = edit(
        &text,
        "(an SSH target):_default'",
        "(an SSH target):_blat_targets'",
    );
    edit(
        &text,
        "#compdef blat\n",
        &format!("#compdef blat\n{ZSH_TARGETS}"),
    )
}

const FISH_TARGETS: &str = r#"
# Target names from the configuration, for --target NAME and `blat ssh
# TARGET`: blat completions --targets, with the -c DIR of the command line.
function __fish_blat_targets
    set -l cmd (commandline -opc)
    set -l config
    set -l n (count $cmd)
    for i in (seq 2 $n)
        switch $cmd[$i]
            case -c --config
                if test $i -lt $n
                    set config --config $cmd[(math $i + 1)]
                end
            case '--config=*'
                set config --config (string replace -- --config= '' $cmd[$i])
        end
    end
    $cmd[1] $config completions --targets 2>/dev/null
end

function __fish_blat_ssh_needs_target
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_blat_global_optspecs) -- $cmd 2>/dev/null
    or return 1
    test "$argv[1]" = ssh
    and test (count $argv) -eq 1
end

complete -c blat -n __fish_blat_ssh_needs_target -f -a "(__fish_blat_targets)"
"#;

fn fish(text: &str) -> String {
    let text = edit(
        text,
        "-l target -d 'Work on this target (repeatable)' -r\n",
        "-l target -d 'Work on this target (repeatable)' -r -f -a \"(__fish_blat_targets)\"\n",
    );
    format!("{text}{FISH_TARGETS}")
}

/// The static script clap_complete makes.
pub fn static_script(shell: Shell) -> String {
    let mut cmd = <super::Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    let gen = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(gen, &mut cmd, "blat", &mut out);
    String::from_utf8(out).expect("clap_complete writes UTF-8")
}

/// `blat completions`: the script, or (`--targets`) the target names.
pub fn run(args: &CompletionsArgs, config_dir: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    let text = match (args.targets, args.shell) {
        (true, _) => target_names(config_dir)
            .iter()
            .map(|name| format!("{name}\n"))
            .collect(),
        (false, Some(shell)) => script(shell),
        (false, None) => unreachable!("clap requires SHELL without --targets"),
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (the shell stopped reading) is not an error.
    let _ = out.write_all(text.as_bytes());
    Ok(())
}

/// The names of `DIR/targets/*.conf` that are valid target names, sorted,
/// without parsing them: completion must work with a half-written file.
pub fn target_names(config_dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(config_dir.join("targets"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_str()?.strip_suffix(".conf")?.to_string();
                    (!name.starts_with('.') && crate::archive::Name::new(&name).is_ok())
                        .then_some(name)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
