"""The XDP programs' C sources, installed as zbanner_xdp.bpf (see bpfprog.BPF_DIR)."""
