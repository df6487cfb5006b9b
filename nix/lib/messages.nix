# Messages shown both at evaluation (warnings) and on the guest (the console
# greeting), written once. builtins only.
{
  # A VM built without an SSH key and without debug mode.
  keyless =
    { name, consolePorts }:
    "${name}: no sshAuthorizedKeys and debugMode off: SSH is closed and root is logged in "
    + "automatically on the local consoles (serial on 127.0.0.1:${toString consolePorts.serial}, "
    + "virtio on 127.0.0.1:${toString consolePorts.virtio}; e.g. `socat -,raw,echo=0 TCP:127.0.0.1:${toString consolePorts.virtio}`). "
    + "Give mkMicrovmRunner sshAuthorizedKeys for SSH by key.";
}
