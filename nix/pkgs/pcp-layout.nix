# Where a PCP package keeps what modules/pcp.nix and the OCI image use: the
# layout of upstream PCP's nix/package.nix and of the nixpkgs pull request's
# package (configuration moved to share/pcp/etc). A package laid out otherwise
# describes itself in passthru.pcpLayout (every field below).
#
# builtins only: the test suite evaluates it with a stand-in package path.
pcp:
let
  # $PCP_DIR. libpcp reads $PCP_DIR/etc/pcp.conf and PCP's scripts source
  # $PCP_DIR/etc/pcp.env (pmlogger_check, pmie_check, ...), so it is the
  # directory above etc/, not etc/ itself.
  dir = "${pcp}/share/pcp";
in
{
  inherit dir;
  etc = "${dir}/etc";
  conf = "${dir}/etc/pcp.conf";
  env = "${dir}/etc/pcp.env";
  bin = "${pcp}/libexec/pcp/bin";
  varLib = "${pcp}/var/lib/pcp";
}
// (pcp.passthru.pcpLayout or { })
