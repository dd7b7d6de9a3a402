# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_blat_global_optspecs
    string join \n c/config= v/verbose q/quiet dry-run json target= all h/help V/version
end

function __fish_blat_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_blat_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_blat_using_subcommand
    set -l cmd (__fish_blat_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c blat -n "__fish_blat_needs_command" -s c -l config -d 'Configuration directory (blat.toml and targets/*.conf)' -r -F
complete -c blat -n "__fish_blat_needs_command" -l target -d 'Work on this target (repeatable)' -r -f -a "(__fish_blat_targets)"
complete -c blat -n "__fish_blat_needs_command" -s v -l verbose -d 'More output: -v lists each package, -vv debug'
complete -c blat -n "__fish_blat_needs_command" -s q -l quiet -d 'Errors and summaries only'
complete -c blat -n "__fish_blat_needs_command" -l dry-run -d 'Show the exact plan and change nothing'
complete -c blat -n "__fish_blat_needs_command" -l json -d 'Print a machine-readable report on stdout'
complete -c blat -n "__fish_blat_needs_command" -l all -d 'Work on every configured target of the right kind'
complete -c blat -n "__fish_blat_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c blat -n "__fish_blat_needs_command" -s V -l version -d 'Print version'
complete -c blat -n "__fish_blat_needs_command" -f -a "sync" -d 'Bring targets in line with their current set from the Release Manager: send what is missing or differs, link aliases, write the PackageList'
complete -c blat -n "__fish_blat_needs_command" -f -a "plist" -d 'Write the current set to each target as .dpkg_archive/packagelist.txt'
complete -c blat -n "__fish_blat_needs_command" -f -a "s3sync" -d 'Keep S3 targets\' buckets holding one ZIP per package-version of their current set (releases flagged s3sync = 1, or the target\'s releases and projects), uploading what is missing or changed, then age the excess'
complete -c blat -n "__fish_blat_needs_command" -f -a "fast" -d 'Consume tags: send each tagged package to its target now, remove the tag once the package is in place (select targets with --target or --all)'
complete -c blat -n "__fish_blat_needs_command" -f -a "tag" -d 'Write the tag PACKAGE::VERSION atomically into the tag directory of every archive target (or of each --target), for `blat fast`'
complete -c blat -n "__fish_blat_needs_command" -f -a "index" -d 'Write the archive\'s content index, .dpkg_archive/dpkg_archive_list.txt: every file and folder, one path a line relative to the archive, sorted by bytes, replaced atomically'
complete -c blat -n "__fish_blat_needs_command" -f -a "age" -d 'Delete package-versions that left the current set, as each target\'s [aging] method says'
complete -c blat -n "__fish_blat_needs_command" -f -a "status" -d 'Show per target, in one line, the last successful sync and its age, whether the target is behind and the last error; then the last run of each command and its outcome, pending and rejected tags, packages marked for deletion (all targets unless --target names some)'
complete -c blat -n "__fish_blat_needs_command" -f -a "check" -d 'Verify everything a sync needs, changing nothing (all targets unless --target names some)'
complete -c blat -n "__fish_blat_needs_command" -f -a "ssh" -d 'Run the system\'s ssh to an SSH target as blat reaches it: its user, identity, port and known_hosts (host keys checked strictly)'
complete -c blat -n "__fish_blat_needs_command" -f -a "completions" -d 'Print a shell completion script (bash, zsh or fish) on stdout'
complete -c blat -n "__fish_blat_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c blat -n "__fish_blat_using_subcommand sync" -l jobs -d 'Targets worked on at once (default: `jobs` in blat.toml, else 4)' -r
complete -c blat -n "__fish_blat_using_subcommand sync" -s c -l config -d 'Configuration directory (blat.toml and targets/*.conf)' -r -F
complete -c blat -n "__fish_blat_using_subcommand sync" -l target -d 'Work on this target (repeatable)' -r -f -a "(__fish_blat_targets)"
complete -c blat -n "__fish_blat_using_subcommand sync" -l due -d 'Only targets whose last successful sync is older than their sync_interval'
complete -c blat -n "__fish_blat_using_subcommand sync" -l force -d 'Allow more deletions than the target\'s max_delete in this pass'
complete -c blat -n "__fish_blat_using_subcommand sync" -l verify -d 'Full check: walk each target instead of trusting its index, repair the index and send what was changed on the target by hand (else every verify_every syncs)'
complete -c blat -n "__fish_blat_using_subcommand sync" -s v -l verbose -d 'More output: -v lists each package, -vv debug'
complete -c blat -n "__fish_blat_using_subcommand sync" -s q -l quiet -d 'Errors and summaries only'
complete -c blat -n "__fish_blat_using_subcommand sync" -l dry-run -d 'Show the exact plan and change nothing'
complete -c blat -n "__fish_blat_using_subcommand sync" -l json -d 'Print a machine-readable report on stdout'
complete -c blat -n "__fish_blat_using_subcommand sync" -l all -d 'Work on every configured target of the right kind'
complete -c blat -n "__fish_blat_using_subcommand sync" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c blat -n "__fish_blat_using_subcommand plist" -s c -l config -d 'Configuration directory (blat.toml and targets/*.conf)' -r -F
complete -c blat -n "__fish_blat_using_subcommand plist" -l target -d 'Work on this target (repeatable)' -r -f -a "(__fish_blat_targets)"
complete -c blat -n "__fish_blat_using_subcommand plist" -s v -l verbose -d 'More output: -v lists each package, -vv debug'
complete -c blat -n "__fish_blat_using_subcommand plist" -s q -l quiet -d 'Errors and summaries only'
complete -c blat -n "__fish_blat_using_subcommand plist" -l dry-run -d 'Show the exact plan and change nothing'
complete -c blat -n "__fish_blat_using_subcommand plist" -l json -d 'Print a machine-readable report on stdout'
complete -c blat -n "__fish_blat_using_subcommand plist" -l all -d 'Work on every configured target of the right kind'
complete -c blat -n "__fish_blat_using_subcommand plist" -s h -l help -d 'Print help'
complete -c blat -n "__fish_blat_using_subcommand s3sync" -l jobs -d 'Buckets worked on at once (default: `jobs` in blat.toml, else 4)' -r
complete -c blat -n "__fish_blat_using_subcommand s3sync" -s c -l config -d 'Configuration directory (blat.toml and targets/*.conf)' -r -F
complete -c blat -n "__fish_blat_using_subcommand s3sync" -l target -d 'Work on this target (repeatable)' -r -f -a "(__fish_blat_targets)"
complete -c blat -n "__fish_blat_using_subcommand s3sync" -l force -d 'Allow more deletions than the target\'s max_delete in this pass'
complete -c blat -n "__fish_blat_using_subcommand s3sync" -s v -l verbose -d 'More output: -v lists each package, -vv debug'
complete -c blat -n "__fish_blat_using_subcommand s3sync" -s q -l quiet -d 'Errors and summaries only'
complete -c blat -n "__fish_blat_using_subcommand s3sync" -l dry-run -d 'Show the exact plan and change nothing'
complete -c blat -n "__fish_blat_using_subcommand s3sync" -l json -d 'Print a machine-readable report on stdout'
complete -c blat -n "__fish_blat_using_subcommand s3sync" -l all -d 'Work on every configured target of the right kind'
complete -c blat -n "__fish_blat_using_subcommand s3sync" -s h -l help -d 'Print help'
complete -c blat -n "__fish_blat_using_subcommand fast" -l watch -d 'Keep polling the tag directories (every fast_poll, and at once when a tag appears) for this long, then exit: `--watch 59s` from cron each minute' -r
complete -c blat -n "__fish_blat_using_subcommand fast" -s c -l config -d 'Configuration directory (blat.toml and targets/*.conf)' -r -F
complete -c blat -n "__fish_blat_using_subcommand fast" -l target -d 'Work on this target (repeatable)' -r -f -a "(__fish_blat_targets)"
complete -c blat -n "__fish_blat_using_subcommand fast" -s v -l verbose -d 'More output: -v lists each package, -vv debug'
complete -c blat -n "__fish_blat_using_subcommand fast" -s q -l quiet -d 'Errors and summaries only'
complete -c blat -n "__fish_blat_using_subcommand fast" -l dry-run -d 'Show the exact plan and change nothing'
complete -c blat -n "__fish_blat_using_subcommand fast" -l json -d 'Print a machine-readable report on stdout'
complete -c blat -n "__fish_blat_using_subcommand fast" -l all -d 'Work on every configured target of the right kind'
complete -c blat -n "__fish_blat_using_subcommand fast" -s h -l help -d 'Print help'
complete -c blat -n "__fish_blat_using_subcommand tag" -s c -l config -d 'Configuration directory (blat.toml and targets/*.conf)' -r -F
complete -c blat -n "__fish_blat_using_subcommand tag" -l target -d 'Work on this target (repeatable)' -r -f -a "(__fish_blat_targets)"
complete -c blat -n "__fish_blat_using_subcommand tag" -s v -l verbose -d 'More output: -v lists each package, -vv debug'
complete -c blat -n "__fish_blat_using_subcommand tag" -s q -l quiet -d 'Errors and summaries only'
complete -c blat -n "__fish_blat_using_subcommand tag" -l dry-run -d 'Show the exact plan and change nothing'
complete -c blat -n "__fish_blat_using_subcommand tag" -l json -d 'Print a machine-readable report on stdout'
complete -c blat -n "__fish_blat_using_subcommand tag" -l all -d 'Work on every configured target of the right kind'
complete -c blat -n "__fish_blat_using_subcommand tag" -s h -l help -d 'Print help'
complete -c blat -n "__fish_blat_using_subcommand index" -l archive -d 'The archive to index; with it no configuration is read (for cron on a target). Default: the configuration\'s `archive`' -r -F
complete -c blat -n "__fish_blat_using_subcommand index" -l threads -d 'Directory-walking threads (default: one per core)' -r
complete -c blat -n "__fish_blat_using_subcommand index" -s c -l config -d 'Configuration directory (blat.toml and targets/*.conf)' -r -F
complete -c blat -n "__fish_blat_using_subcommand index" -l target -d 'Work on this target (repeatable)' -r -f -a "(__fish_blat_targets)"
complete -c blat -n "__fish_blat_using_subcommand index" -s v -l verbose -d 'More output: -v lists each package, -vv debug'
complete -c blat -n "__fish_blat_using_subcommand index" -s q -l quiet -d 'Errors and summaries only'
complete -c blat -n "__fish_blat_using_subcommand index" -l dry-run -d 'Show the exact plan and change nothing'
complete -c blat -n "__fish_blat_using_subcommand index" -l json -d 'Print a machine-readable report on stdout'
complete -c blat -n "__fish_blat_using_subcommand index" -l all -d 'Work on every configured target of the right kind'
complete -c blat -n "__fish_blat_using_subcommand index" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c blat -n "__fish_blat_using_subcommand age" -l archive -d 'With --local: the archive on this machine' -r -F
complete -c blat -n "__fish_blat_using_subcommand age" -l after -d 'With --local: delete once marked for longer than this' -r
complete -c blat -n "__fish_blat_using_subcommand age" -l grace -d 'With --local: a package-version whose descpkg is younger than this, or that arrived less than this ago, is never excess' -r
complete -c blat -n "__fish_blat_using_subcommand age" -l max-delete -d 'With --local: refuse a pass that would delete more than this many package-versions' -r
complete -c blat -n "__fish_blat_using_subcommand age" -l jobs -d 'Targets worked on at once (default: `jobs` in blat.toml, else 4)' -r
complete -c blat -n "__fish_blat_using_subcommand age" -s c -l config -d 'Configuration directory (blat.toml and targets/*.conf)' -r -F
complete -c blat -n "__fish_blat_using_subcommand age" -l target -d 'Work on this target (repeatable)' -r -f -a "(__fish_blat_targets)"
complete -c blat -n "__fish_blat_using_subcommand age" -l force -d 'Allow more deletions than max_delete in this pass'
complete -c blat -n "__fish_blat_using_subcommand age" -l local -d 'Run on the target itself, for aging method "target" (needs --archive; no configuration)'
complete -c blat -n "__fish_blat_using_subcommand age" -s v -l verbose -d 'More output: -v lists each package, -vv debug'
complete -c blat -n "__fish_blat_using_subcommand age" -s q -l quiet -d 'Errors and summaries only'
complete -c blat -n "__fish_blat_using_subcommand age" -l dry-run -d 'Show the exact plan and change nothing'
complete -c blat -n "__fish_blat_using_subcommand age" -l json -d 'Print a machine-readable report on stdout'
complete -c blat -n "__fish_blat_using_subcommand age" -l all -d 'Work on every configured target of the right kind'
complete -c blat -n "__fish_blat_using_subcommand age" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c blat -n "__fish_blat_using_subcommand status" -l metrics -d 'Also write Prometheus text format here (node_exporter textfile collector), replaced atomically' -r -F
complete -c blat -n "__fish_blat_using_subcommand status" -s c -l config -d 'Configuration directory (blat.toml and targets/*.conf)' -r -F
complete -c blat -n "__fish_blat_using_subcommand status" -l target -d 'Work on this target (repeatable)' -r -f -a "(__fish_blat_targets)"
complete -c blat -n "__fish_blat_using_subcommand status" -s v -l verbose -d 'More output: -v lists each package, -vv debug'
complete -c blat -n "__fish_blat_using_subcommand status" -s q -l quiet -d 'Errors and summaries only'
complete -c blat -n "__fish_blat_using_subcommand status" -l dry-run -d 'Show the exact plan and change nothing'
complete -c blat -n "__fish_blat_using_subcommand status" -l json -d 'Print a machine-readable report on stdout'
complete -c blat -n "__fish_blat_using_subcommand status" -l all -d 'Work on every configured target of the right kind'
complete -c blat -n "__fish_blat_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c blat -n "__fish_blat_using_subcommand check" -s c -l config -d 'Configuration directory (blat.toml and targets/*.conf)' -r -F
complete -c blat -n "__fish_blat_using_subcommand check" -l target -d 'Work on this target (repeatable)' -r -f -a "(__fish_blat_targets)"
complete -c blat -n "__fish_blat_using_subcommand check" -s v -l verbose -d 'More output: -v lists each package, -vv debug'
complete -c blat -n "__fish_blat_using_subcommand check" -s q -l quiet -d 'Errors and summaries only'
complete -c blat -n "__fish_blat_using_subcommand check" -l dry-run -d 'Show the exact plan and change nothing'
complete -c blat -n "__fish_blat_using_subcommand check" -l json -d 'Print a machine-readable report on stdout'
complete -c blat -n "__fish_blat_using_subcommand check" -l all -d 'Work on every configured target of the right kind'
complete -c blat -n "__fish_blat_using_subcommand check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c blat -n "__fish_blat_using_subcommand ssh" -s c -l config -d 'Configuration directory (blat.toml and targets/*.conf)' -r -F
complete -c blat -n "__fish_blat_using_subcommand ssh" -l target -d 'Work on this target (repeatable)' -r -f -a "(__fish_blat_targets)"
complete -c blat -n "__fish_blat_using_subcommand ssh" -s v -l verbose -d 'More output: -v lists each package, -vv debug'
complete -c blat -n "__fish_blat_using_subcommand ssh" -s q -l quiet -d 'Errors and summaries only'
complete -c blat -n "__fish_blat_using_subcommand ssh" -l dry-run -d 'Show the exact plan and change nothing'
complete -c blat -n "__fish_blat_using_subcommand ssh" -l json -d 'Print a machine-readable report on stdout'
complete -c blat -n "__fish_blat_using_subcommand ssh" -l all -d 'Work on every configured target of the right kind'
complete -c blat -n "__fish_blat_using_subcommand ssh" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c blat -n "__fish_blat_using_subcommand completions" -s c -l config -d 'Configuration directory (blat.toml and targets/*.conf)' -r -F
complete -c blat -n "__fish_blat_using_subcommand completions" -l target -d 'Work on this target (repeatable)' -r -f -a "(__fish_blat_targets)"
complete -c blat -n "__fish_blat_using_subcommand completions" -l targets -d 'Print the configured target names instead, one a line (the scripts call this)'
complete -c blat -n "__fish_blat_using_subcommand completions" -s v -l verbose -d 'More output: -v lists each package, -vv debug'
complete -c blat -n "__fish_blat_using_subcommand completions" -s q -l quiet -d 'Errors and summaries only'
complete -c blat -n "__fish_blat_using_subcommand completions" -l dry-run -d 'Show the exact plan and change nothing'
complete -c blat -n "__fish_blat_using_subcommand completions" -l json -d 'Print a machine-readable report on stdout'
complete -c blat -n "__fish_blat_using_subcommand completions" -l all -d 'Work on every configured target of the right kind'
complete -c blat -n "__fish_blat_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c blat -n "__fish_blat_using_subcommand help; and not __fish_seen_subcommand_from sync plist s3sync fast tag index age status check ssh completions help" -f -a "sync" -d 'Bring targets in line with their current set from the Release Manager: send what is missing or differs, link aliases, write the PackageList'
complete -c blat -n "__fish_blat_using_subcommand help; and not __fish_seen_subcommand_from sync plist s3sync fast tag index age status check ssh completions help" -f -a "plist" -d 'Write the current set to each target as .dpkg_archive/packagelist.txt'
complete -c blat -n "__fish_blat_using_subcommand help; and not __fish_seen_subcommand_from sync plist s3sync fast tag index age status check ssh completions help" -f -a "s3sync" -d 'Keep S3 targets\' buckets holding one ZIP per package-version of their current set (releases flagged s3sync = 1, or the target\'s releases and projects), uploading what is missing or changed, then age the excess'
complete -c blat -n "__fish_blat_using_subcommand help; and not __fish_seen_subcommand_from sync plist s3sync fast tag index age status check ssh completions help" -f -a "fast" -d 'Consume tags: send each tagged package to its target now, remove the tag once the package is in place (select targets with --target or --all)'
complete -c blat -n "__fish_blat_using_subcommand help; and not __fish_seen_subcommand_from sync plist s3sync fast tag index age status check ssh completions help" -f -a "tag" -d 'Write the tag PACKAGE::VERSION atomically into the tag directory of every archive target (or of each --target), for `blat fast`'
complete -c blat -n "__fish_blat_using_subcommand help; and not __fish_seen_subcommand_from sync plist s3sync fast tag index age status check ssh completions help" -f -a "index" -d 'Write the archive\'s content index, .dpkg_archive/dpkg_archive_list.txt: every file and folder, one path a line relative to the archive, sorted by bytes, replaced atomically'
complete -c blat -n "__fish_blat_using_subcommand help; and not __fish_seen_subcommand_from sync plist s3sync fast tag index age status check ssh completions help" -f -a "age" -d 'Delete package-versions that left the current set, as each target\'s [aging] method says'
complete -c blat -n "__fish_blat_using_subcommand help; and not __fish_seen_subcommand_from sync plist s3sync fast tag index age status check ssh completions help" -f -a "status" -d 'Show per target, in one line, the last successful sync and its age, whether the target is behind and the last error; then the last run of each command and its outcome, pending and rejected tags, packages marked for deletion (all targets unless --target names some)'
complete -c blat -n "__fish_blat_using_subcommand help; and not __fish_seen_subcommand_from sync plist s3sync fast tag index age status check ssh completions help" -f -a "check" -d 'Verify everything a sync needs, changing nothing (all targets unless --target names some)'
complete -c blat -n "__fish_blat_using_subcommand help; and not __fish_seen_subcommand_from sync plist s3sync fast tag index age status check ssh completions help" -f -a "ssh" -d 'Run the system\'s ssh to an SSH target as blat reaches it: its user, identity, port and known_hosts (host keys checked strictly)'
complete -c blat -n "__fish_blat_using_subcommand help; and not __fish_seen_subcommand_from sync plist s3sync fast tag index age status check ssh completions help" -f -a "completions" -d 'Print a shell completion script (bash, zsh or fish) on stdout'
complete -c blat -n "__fish_blat_using_subcommand help; and not __fish_seen_subcommand_from sync plist s3sync fast tag index age status check ssh completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'

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
