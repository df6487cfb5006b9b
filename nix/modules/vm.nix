# The MicroVM around a pcp-eval guest (modules/guest.nix): QEMU via
# microvm.nix, serial ttyS0 and virtio hvc0 consoles on TCP ports of
# 127.0.0.1, user networking with forwarded ports or a TAP device with a
# static address. mk-microvm.nix sets pcpEval.vm from nix/lib/vm-params.nix.
#
# It needs microvm.nix's NixOS module (microvm.nixosModules.microvm); the
# flake's nixosModules.vm and .default bring it. Imported without it, the
# evaluation stops with an assertion that says so.
{
  config,
  options,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.pcpEval.vm;
  inherit (pkgs.stdenv.hostPlatform) system;
  isTap = cfg.networking == "tap";

  # The runner attaches virtio devices over MMIO on QEMU's microvm machine and
  # over PCI otherwise (lib/runners/qemu.nix, requirePci); the virtio-serial
  # bus for hvc0 must match.
  usesPci =
    !(lib.hasPrefix "microvm" config.microvm.qemu.machine)
    || config.microvm.shares != [ ]
    || config.microvm.graphics.enable
    || lib.any (d: d.bus == "pci") config.microvm.devices;
  virtioSerialDevice = if usesPci then "virtio-serial-pci" else "virtio-serial-device";

  serialTty = if system == "aarch64-linux" then "ttyAMA0" else "ttyS0";
  loopback = "127.0.0.1";

  uplinkMac = if isTap then cfg.tap.mac else cfg.userMac;

  hasMicrovm = options ? microvm;
in
{
  imports = [ ./guest.nix ];

  config =
    if !hasMicrovm then
      {
        assertions = [
          {
            assertion = false;
            message = "pcpEval.vm (nix/modules/vm.nix) needs microvm.nix's NixOS module: import pcp-eval's nixosModules.vm, which brings it, or add microvm.nixosModules.microvm to your imports";
          }
        ];
      }
    else
      lib.mkMerge [
        {
          system.stateVersion = lib.trivial.release;

          # ── MicroVM ──
          microvm = {
            hypervisor = "qemu";
            mem = cfg.memoryMiB;
            vcpu = cfg.vcpus;
            socket = "${cfg.name}.sock";
            interfaces =
              if isTap then
                [
                  {
                    type = "tap";
                    inherit (cfg.tap) id mac;
                  }
                ]
              else
                [
                  {
                    type = "user";
                    id = "usernet";
                    mac = cfg.userMac;
                  }
                ];
            forwardPorts = map (fw: {
              from = "host";
              proto = "tcp";
              host.address = loopback;
              host.port = fw.host;
              guest.port = fw.guest;
            }) cfg.forwards;
            # Our own consoles instead of the runner's stdio serial.
            qemu.serialConsole = false;
            qemu.extraArgs = [
              "-name"
              "${cfg.name},process=${cfg.name}"
              # Both consoles are also logged in the runner's working directory
              # (the VM's state directory, where host/vm.sh starts it), so a
              # failed start can show what the guest printed.
              "-chardev"
              "socket,id=pcpevalttyS0,host=${loopback},port=${toString cfg.consolePorts.serial},server=on,wait=off,logfile=serial.log"
              "-serial"
              "chardev:pcpevalttyS0"
              "-device"
              virtioSerialDevice
              "-chardev"
              "socket,id=pcpevalhvc0,host=${loopback},port=${toString cfg.consolePorts.virtio},server=on,wait=off,logfile=virtio.log"
              "-device"
              "virtconsole,chardev=pcpevalhvc0"
            ];
          };

          # Early boot on the serial line; hvc0 last so it becomes /dev/console
          # once virtio_console is up. systemd's getty generator starts a getty
          # on every active kernel console.
          boot.kernelParams = lib.optional (system == "x86_64-linux") "earlyprintk=${serialTty}" ++ [
            "console=${serialTty},115200"
            "console=hvc0"
          ];
          boot.initrd.kernelModules = [ "virtio_console" ];

          # ── Network ──
          networking.useNetworkd = true;
          networking.useDHCP = false;
          systemd.network.enable = true;
          systemd.network.networks."10-uplink" = {
            matchConfig.MACAddress = uplinkMac;
            networkConfig =
              if isTap then
                {
                  Address = "${cfg.tap.address}/${toString cfg.tap.prefixLength}";
                  Gateway = cfg.tap.gateway;
                  DHCP = "no";
                }
              else
                { DHCP = "ipv4"; };
          };
        }

        # ── TCG: no -enable-kvm and a tcg-only machine ──
        (lib.mkIf (cfg.accel == "tcg") {
          microvm.cpu = "max";
          microvm.qemu.machineOpts = lib.mkIf (system == "x86_64-linux") {
            accel = "tcg";
            mem-merge = "on";
            acpi = "on";
            pit = "off";
            pic = "off";
            pcie = if usesPci then "on" else "off";
            rtc = "on";
            usb = "off";
          };
        })
      ];
}
