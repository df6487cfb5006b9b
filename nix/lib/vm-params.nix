# Resolves and validates the arguments of the one parametric MicroVM function
# (lib.<system>.mkMicrovmRunner in flake.nix, nix/lib/mk-microvm.nix).
#
# Pure: builtins only, so the test suite evaluates it without nixpkgs and
# checks both the resolved values and the error messages. Every default comes
# from nix/constants.json (through ports.nix); an argument that is wrong fails
# with a message naming the argument and how to fix it.
let
  table = import ./ports.nix;
  net = import ./net.nix;
  rules = import ./rules.nix;
  fields = import ./vm-fields.nix;
  messages = import ./messages.nix;
  constants = builtins.fromJSON (builtins.readFile ../constants.json);
  variantNames = builtins.attrNames table.variants;

  fail = msg: throw "mkMicrovmRunner: ${msg}";

  check = cond: msg: value: if cond then value else fail msg;

  subnet = net.parseCidr table.network.subnet;
in
{
  variant,
  name ? null,
  networking ? "user",
  tap ? null,
  sshAuthorizedKeys ? [ ],
  debugMode ? false,
  memoryMiB ? constants.vm.memoryMiB,
  vcpus ? constants.vm.vcpus,
  pcpSource ? "nixpkgs",
  # false on hosts whose /dev/kvm is missing or broken: the runner uses TCG.
  useKvm ? true,
  # The same choice spelled as QEMU's accelerator: "kvm" or "tcg".
  accel ? null,
  # Feature switches; null means "as the variant table says".
  enablePmlogger ? null,
  enableEvalTools ? null,
  enablePmieTest ? null,
  enableGrafana ? null,
  enableBpf ? null,
  enableBelow ? null,
}:
let
  v =
    if builtins.isString variant && table.variants ? ${variant} then
      table.variants.${variant}
    else
      fail "variant '${toString variant}' is unknown; use one of ${builtins.concatStringsSep ", " variantNames}";

  pick =
    arg: argName: default:
    if arg == null then
      default
    else if builtins.isBool arg then
      arg
    else
      fail "${argName} must be true, false or null (the variant's default), got ${builtins.typeOf arg}";

  features = rules.resolveFeatures {
    pmlogger = pick enablePmlogger "enablePmlogger" v.features.pmlogger;
    evalTools = pick enableEvalTools "enableEvalTools" v.features.evalTools;
    pmieTest = pick enablePmieTest "enablePmieTest" v.features.pmieTest;
    grafana = pick enableGrafana "enableGrafana" v.features.grafana;
    bpf = pick enableBpf "enableBpf" v.features.bpf;
    below = pick enableBelow "enableBelow" v.features.below;
  };

  vmName =
    if name == null then
      v.hostname
    else
      check (
        builtins.isString name && builtins.match "[A-Za-z0-9][A-Za-z0-9._-]{0,62}" name != null
      ) "name '${toString name}' must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit" name;

  resolvedNetworking = check (builtins.elem networking [
    "user"
    "tap"
  ]) "networking must be \"user\" or \"tap\", got '${toString networking}'" networking;

  resolvedTap =
    if resolvedNetworking == "user" then
      check (tap == null) "tap is only for networking = \"tap\"; drop it or set networking = \"tap\"" null
    else if tap == null then
      # The variant's own slot; its `index` is table data, not a VM field.
      {
        inherit (v.tap)
          id
          address
          mac
          prefixLength
          gateway
          ;
      }
    else if !builtins.isAttrs tap then
      fail "tap must be an attribute set { id; address; mac; }"
    else
      let
        missing = builtins.filter (k: !(tap ? ${k})) [
          "id"
          "address"
          "mac"
        ];
      in
      if missing != [ ] then
        fail "tap is missing ${builtins.concatStringsSep ", " missing} (give { id; address; mac; })"
      else if !(builtins.isString tap.id && builtins.match "[A-Za-z0-9_.-]{1,15}" tap.id != null) then
        fail "tap.id '${toString tap.id}' must be a Linux interface name of 1-15 characters"
      else if net.parseIPv4 tap.address == null then
        fail "tap.address '${toString tap.address}' is not an IPv4 address"
      else if !(net.inSubnet subnet tap.address) then
        fail "tap.address ${tap.address} is outside ${table.network.subnet} (network.subnet in nix/constants.json)"
      else if tap.address == table.network.gateway then
        fail "tap.address ${tap.address} is the bridge's gateway address; pick another"
      else if !(net.isMac tap.mac) then
        fail "tap.mac '${toString tap.mac}' must be six lower-case hex pairs like 02:00:00:00:00:01"
      else
        {
          inherit (tap) id address mac;
          inherit (table.network) prefixLength gateway;
        };

  resolvedMemory =
    if !builtins.isInt memoryMiB then
      fail "memoryMiB must be an integer number of MiB"
    else if memoryMiB < constants.vm.minMemoryMiB then
      fail "memoryMiB ${toString memoryMiB} is below vm.minMemoryMiB (${toString constants.vm.minMemoryMiB})"
    else if memoryMiB == 2048 then
      # QEMU hangs with exactly 2 GiB on microvm.nix (microvm-nix/microvm.nix#171).
      fail "memoryMiB 2048 hangs QEMU under microvm.nix (issue 171); use 2047 or 2049"
    else
      memoryMiB;

  resolvedVcpus = check (builtins.isInt vcpus && vcpus >= 1) "vcpus must be an integer >= 1" vcpus;

  resolvedSource = check (builtins.elem pcpSource [
    "nixpkgs"
    "upstream"
  ]) "pcpSource must be \"nixpkgs\" or \"upstream\", got '${toString pcpSource}'" pcpSource;

  resolvedKeys = check (
    builtins.isList sshAuthorizedKeys
    && builtins.all (
      k: builtins.isString k && builtins.match "(ssh-|ecdsa-|sk-)[^ ]+ [A-Za-z0-9+/=]+( .*)?" k != null
    ) sshAuthorizedKeys
  ) "sshAuthorizedKeys must be a list of OpenSSH public key lines (\"ssh-ed25519 AAAA... comment\")" sshAuthorizedKeys;

  kvmAccel =
    if builtins.isBool useKvm then
      (if useKvm then "kvm" else "tcg")
    else
      fail "useKvm must be true or false, got ${builtins.typeOf useKvm}";

  resolvedAccel =
    if accel == null then
      kvmAccel
    else if !(builtins.elem accel [
      "kvm"
      "tcg"
    ]) then
      fail "accel must be \"kvm\" or \"tcg\", got '${toString accel}'"
    else if accel != kvmAccel && !useKvm then
      fail "useKvm = false and accel = \"${accel}\" disagree; give one of them"
    else
      accel;

  resolvedDebug = check (builtins.isBool debugMode) "debugMode must be true or false" debugMode;

  # Throws when a record carries a field modules/guest.nix does not declare
  # (the NixOS module system would fail later with "option does not exist").
  onlyDeclared =
    path: allowed: record:
    let
      extra = builtins.filter (k: !(builtins.elem k allowed)) (builtins.attrNames record);
    in
    if extra == [ ] then
      record
    else
      throw "vm-params.nix: ${path}.${builtins.head extra} is not a field of lib/vm-fields.nix (declare it in modules/guest.nix and lib/vm-fields.nix, or drop it)";

  out = {
    inherit variant features;

  name = vmName;
  inherit (v) hostname consolePorts;
  # The user-networking NIC reuses the variant's MAC slot.
  userMac = v.tap.mac;
  networking = resolvedNetworking;
  tap = resolvedTap;
  # Host port forwards (user networking only); a TAP VM is reached at its address.
  forwards = if resolvedNetworking == "user" then rules.forwardsFor v.portOffset features else [ ];
  sshAuthorizedKeys = resolvedKeys;
  debugMode = resolvedDebug;
  memoryMiB = resolvedMemory;
  vcpus = resolvedVcpus;
  pcpSource = resolvedSource;
  accel = resolvedAccel;
  guestPorts = table.guestPorts;
  network = table.network;
  warnings =
    if resolvedKeys == [ ] && !resolvedDebug then
      [
        (messages.keyless {
          name = vmName;
          inherit (v) consolePorts;
        })
      ]
    else
      [ ];
  };
in
out
// {
  # Exactly the value of pcpEval.vm (mk-microvm.nix adds pcpSrc, the flake input).
  vmConfig = onlyDeclared "pcpEval.vm" fields.vm (
    builtins.intersectAttrs (builtins.listToAttrs (
      map (k: {
        name = k;
        value = null;
      }) fields.vm
    )) out
    // {
      tap = if out.tap == null then null else onlyDeclared "pcpEval.vm.tap" fields.tap out.tap;
      forwards = map (onlyDeclared "pcpEval.vm.forwards.*" fields.forwards) out.forwards;
      consolePorts = onlyDeclared "pcpEval.vm.consolePorts" fields.consolePorts out.consolePorts;
      features = onlyDeclared "pcpEval.vm.features" fields.features out.features;
    }
  );
}
