# A build-time check that a PCP package has the layout of pcp-layout.nix:
# configuration in the package (not a sysconfdir=/etc build, whose pcp.conf
# points at /etc/pcp, which nothing here populates), the scripts' pcp.env,
# the daemons, and a merged root PMNS. It fails with what is missing and the
# fix, instead of a VM or image whose daemons fail at boot.
{
  runCommand,
  pcp,
}:
let
  layout = import ./pcp-layout.nix pcp;
in
runCommand "pcp-layout-check-${pcp.name or "pcp"}" { } ''
  fail() {
    echo "pcp-eval: ${pcp} does not have the PCP layout nix/modules/pcp.nix and the image use: $1." >&2
    echo "  Use pcpSource = \"upstream\", or describe the package's layout in passthru.pcpLayout (nix/pkgs/pcp-layout.nix)." >&2
    exit 1
  }
  [ -f ${layout.conf} ] || fail "no pcp.conf at ${layout.conf}"
  [ -f ${layout.env} ] || fail "no pcp.env at ${layout.env} (\$PCP_DIR/etc/pcp.env, sourced by PCP's scripts)"
  for daemon in pmcd pmproxy pmlogger_check; do
    [ -x ${layout.bin}/$daemon ] || fail "no $daemon in ${layout.bin}"
  done
  [ -s ${layout.varLib}/pmns/root ] || fail "no merged root PMNS at ${layout.varLib}/pmns/root"
  sysconf=$(sed -n 's/^PCP_SYSCONF_DIR=//p' ${layout.conf} | tr -d '"')
  case "$sysconf" in
    ${builtins.storeDir}/*) ;;
    *) fail "its pcp.conf has PCP_SYSCONF_DIR=$sysconf (a sysconfdir=/etc build), not a directory inside the package" ;;
  esac
  touch $out
''
