"""Everything that faces a board, in one room:

    config.py     boards.toml (named boards, [groups]) and the toolkit's own folders and known_hosts
    names.py      a board name -> a running, reachable board (`BoardSpec`): local, qemu, named, user@host
    deploy.py     the SSH transport (paramiko), host keys, the content-addressed upload, running the agent
    provision.py  `edgeopt board setup`: the agent's runtime installed from wheels the host downloads
    ops.py        deploy, single-bundle bench, info, clean, doctor checks: what the CLI's board commands do
    qemu/         the QEMU-emulated aarch64 board the toolkit builds and starts itself

The embedded loopback SSH board is edgeopt.board.local (it ships beside the agent); the bench
report's driver over many boards is toolkit/bench/."""
