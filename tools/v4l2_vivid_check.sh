#!/bin/sh
# `doppel scan` on a real V4L2 camera driver, on a machine that has no camera and no
# kernel modules of its own (docs/video.md, "A V4L2 camera"): boots Debian's kernel in a
# qemu VM whose root file system is this machine's, shared read-only over 9p, loads
# Linux's vivid driver (the kernel's virtual video test driver: a webcam input that
# produces a test pattern, at /dev/video0) and runs
#     doppel scan /dev/video0 --max-seconds S --json
# inside it, from this checkout's build. The pattern has no face: what this checks is the
# camera path itself — libavdevice loaded on the first camera, the V4L2 device opened,
# frames decoded and analysed live, the scan ending at --max-seconds with its report and
# exit status (1: no face, so no "real" verdict), no crash and no hang.
# Then a face through a V4L2 device: v4l2loopback (Debian's v4l2loopback-dkms source, built
# here against Debian's headers for that kernel) gives /dev/video1, the ffmpeg program
# writes a real clip into it (../shared/data/video/ffpp_real_519.mp4, else python3-skimage's
# astronaut.png looped), and doppel scans /dev/video1 as a camera: a track, a verdict.
#
# Usage (root; the repository root; after `make build`):
#   tools/v4l2_vivid_check.sh [BUILD] [WORK] [SECONDS]     (defaults: build /tmp/doppel-v4l2 15)
#   SCAN_OPTS="--input-option video_size=1280x720"  more options for doppel scan
# Needs the Debian packages qemu-system-x86, kmod and cpio (installed if missing), and
# downloads (apt-get download: Debian packages only) linux-image-amd64's kernel, its
# headers and kbuild, v4l2loopback-dkms and busybox-static into WORK, extracted there, not
# installed (v4l2loopback is built there with make and gcc-12). The VM runs on qemu's
# emulator (its AVX2 included), so the scan's rate there says nothing about doppel's.
# Prints the VM's console: each scan's JSON lines, then DOPPEL_EXIT_VIVID=N / DOPPEL_EXIT_LOOPBACK=N.
# Exit status: 0 when both scans ended with their summary (exit 0 or 1) and the loopback scan
# scored a face; 3 when the VM did not get as far as running them; else 1.
set -eu
build=${1:-build}
work=${2:-/tmp/doppel-v4l2}
secs=${3:-15}
repo=$(pwd)
[ -x "$build/doppel" ] || { echo "v4l2_vivid_check: no $build/doppel (make build first)" >&2; exit 3; }
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
missing=""
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing="$missing qemu-system-x86"
command -v cpio >/dev/null 2>&1 || missing="$missing cpio"
[ -x /sbin/depmod ] || command -v depmod >/dev/null 2>&1 || missing="$missing kmod"
if [ -n "$missing" ]; then
    # shellcheck disable=SC2086 # a list of packages
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
depmod=$(command -v depmod || echo /sbin/depmod)
mkdir -p "$work"
work=$(cd "$work" && pwd) # absolute: the module build and the headers' Makefile need it
cd "$work"
kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
[ -n "$kpkg" ] || { echo "v4l2_vivid_check: cannot resolve linux-image-amd64" >&2; exit 3; }
kver=${kpkg#linux-image-}
if [ ! -f "k/boot/vmlinuz-$kver" ]; then
    rm -f ./*.deb
    apt-get download "$kpkg" busybox-static >/dev/null 2>&1
    rm -rf k bb
    dpkg-deb -x "$(ls "$kpkg"_*.deb)" k
    dpkg-deb -x "$(ls busybox-static_*.deb)" bb
    "$depmod" -b k "$kver"
fi
if [ ! -f loop/v4l2loopback.ko ]; then # v4l2loopback for that kernel, from Debian's source package
    rm -rf hdr loop
    mkdir -p hdr loop
    kb=$(apt-cache depends "linux-headers-$kver" | awk '/Depends: linux-kbuild-/ {print $2; exit}')
    cm=$(apt-cache depends "linux-headers-$kver" | awk '/Depends: linux-headers-.*-common/ {print $2; exit}')
    apt-get download "linux-headers-$kver" "$cm" "$kb" v4l2loopback-dkms >/dev/null 2>&1
    for d in linux-headers-*.deb linux-kbuild-*.deb v4l2loopback-dkms_*.deb; do dpkg-deb -x "$d" hdr; done
    # the headers' Makefile includes the common half by its installed path: point it here
    sed -i "s|include /usr/src/|include $work/hdr/usr/src/|" "hdr/usr/src/linux-headers-$kver/Makefile"
    cp -r hdr/usr/src/v4l2loopback-*/* loop/
    make -s -C "hdr/usr/src/linux-headers-$kver" M="$work/loop" modules >/dev/null 2>&1 ||
        echo "v4l2_vivid_check: v4l2loopback did not build: the loopback scan is skipped" >&2
fi
mods=k/lib/modules/$kver
# every module the guest needs, dependencies first (modules.dep lists each module's own first)
need() { # MODULE.ko path relative to $mods -> its dependency closure, deepest first
    deps=$(grep "^$1:" "$mods/modules.dep" | cut -d: -f2)
    for d in $deps; do need "$d"; done
    echo "$1"
}
list=$( (need kernel/drivers/virtio/virtio_pci.ko; need kernel/net/9p/9pnet_virtio.ko; need kernel/fs/9p/9p.ko
    need kernel/drivers/media/test-drivers/vivid/vivid.ko) | awk '!seen[$0]++')
rm -rf initrd
mkdir -p initrd/bin initrd/proc initrd/sys initrd/dev initrd/host initrd/mod
cp bb/bin/busybox initrd/bin/
for m in $list; do cp "$mods/$m" initrd/mod/; basename "$m" >> initrd/mod/order; done
[ -f loop/v4l2loopback.ko ] && cp loop/v4l2loopback.ko initrd/mod/ && echo v4l2loopback.ko >> initrd/mod/order
clip=$repo/../shared/data/video/ffpp_real_519.mp4
feed="-re -i $clip -t $((secs + 4))"
if [ ! -f "$clip" ]; then
    clip=/usr/lib/python3/dist-packages/skimage/data/astronaut.png
    feed="-re -loop 1 -framerate 25 -i $clip -t $((secs + 4))"
fi
cat > initrd/init <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in \$(cat /mod/order); do
    case \$m in
    vivid.ko) insmod /mod/\$m n_devs=1 node_types=0x1 num_inputs=1 input_types=0x0 ;; # one webcam capture node
    v4l2loopback.ko) insmod /mod/\$m video_nr=1 exclusive_caps=1 card_label=doppel-check ;; # /dev/video1
    *) insmod /mod/\$m ;;
    esac
done
mount -t 9p -o trans=virtio,version=9p2000.L,ro hostroot /host || { echo "v4l2_vivid_check: no 9p root"; poweroff -f; }
mount -t devtmpfs dev /host/dev; mount -t proc proc /host/proc; mount -t sysfs sys /host/sys
mount -t tmpfs tmp /host/tmp
ls -l /host/dev/video* 2>&1
chroot /host /bin/sh -c 'cd $repo && HOME=/tmp $build/doppel scan /dev/video0 --max-seconds $secs --json ${SCAN_OPTS:-}; echo DOPPEL_EXIT_VIVID=\$?'
if [ -e /host/dev/video1 ]; then
    chroot /host /bin/sh -c 'ffmpeg -nostdin -loglevel error $feed -vf scale=640:480 -pix_fmt yuyv422 -f v4l2 /dev/video1 &
        sleep 2; cd $repo && HOME=/tmp $build/doppel scan /dev/video1 --max-seconds $secs --json; echo DOPPEL_EXIT_LOOPBACK=\$?; wait'
fi
poweroff -f
EOF
chmod +x initrd/init
(cd initrd && find . | cpio -o -H newc --quiet) | gzip -1 > initrd.gz
# qemu's emulator by default: on the 2-vCPU VM the nested KVM guest stopped at the kernel's entry (no
# output after the boot loader); V4L2_KVM=1 tries KVM.
accel="-machine accel=tcg -cpu max"
[ "${V4L2_KVM:-0}" = 1 ] && accel="-machine accel=kvm -cpu host,-arch-capabilities"
# shellcheck disable=SC2086 # accel is a list of options
qemu-system-x86_64 $accel -m 2048 -smp 2 -nographic -no-reboot \
    -kernel "k/boot/vmlinuz-$kver" -initrd initrd.gz -append "console=ttyS0 quiet panic=-1" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap | tee console.log
vivid=$(sed -n 's/.*DOPPEL_EXIT_VIVID=\([0-9]*\).*/\1/p' console.log | tail -1)
loop=$(sed -n 's/.*DOPPEL_EXIT_LOOPBACK=\([0-9]*\).*/\1/p' console.log | tail -1)
[ -n "$vivid" ] || { echo "v4l2_vivid_check: doppel did not run in the VM (console: $work/console.log)" >&2; exit 3; }
echo "v4l2_vivid_check: vivid scan exit $vivid, loopback scan exit ${loop:-not run}"
case "$vivid:$loop" in [01]:[01]) ;; *) exit 1 ;; esac
grep -q '"faces_scored":[1-9]' console.log || { echo "v4l2_vivid_check: no face scored through /dev/video1" >&2; exit 1; }
exit 0
