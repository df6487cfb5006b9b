# The fields of the pcpEval.vm option tree, as data. modules/guest.nix
# declares exactly these options (it checks itself against this file when it
# is evaluated), vm-params.nix produces exactly these fields for
# mk-microvm.nix, and test/integration/nix.test.ts checks, offline, that
# every flake package and nixosConfiguration passes only these. A field added
# on one side and not the other fails there, not at `nix build`.
{
  vm = [
    "name"
    "hostname"
    "networking"
    "forwards"
    "userMac"
    "tap"
    "consolePorts"
    "sshAuthorizedKeys"
    "debugMode"
    "memoryMiB"
    "vcpus"
    "accel"
    "pcpSource"
    "features"
  ];
  # Sub-records: pcpEval.vm.tap, each element of pcpEval.vm.forwards, ...
  tap = [
    "id"
    "address"
    "mac"
    "prefixLength"
    "gateway"
  ];
  forwards = [
    "name"
    "host"
    "guest"
  ];
  consolePorts = [
    "serial"
    "virtio"
  ];
  features = [
    "pmlogger"
    "evalTools"
    "pmieTest"
    "grafana"
    "bpf"
    "below"
    "nodeExporter"
  ];
}
