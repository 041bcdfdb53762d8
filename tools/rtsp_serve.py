#!/usr/bin/python3
"""A small RTSP server, the way an IP camera serves: `doppel scan rtsp://HOST:PORT/cam`
pulls from it (tests/test_scan.c, test_rtsp_pull). It serves a numbered image sequence as
Motion-JPEG over RTP, 10 frames/s, to every client from the first frame.

    tools/rtsp_serve.py PORT 'DIR/frame_%05d.png' [FIRST_INDEX] [LOOP]

Needs Debian's gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good and python3-gi
(run with /usr/bin/python3). Prints "serving rtsp://127.0.0.1:PORT/cam" when ready; runs
until killed. LOOP=1 repeats the sequence (a camera that never ends)."""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    port, pattern = sys.argv[1], sys.argv[2]
    first = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    loop = len(sys.argv) > 4 and sys.argv[4] == "1"
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    kind = "png" if pattern.endswith(".png") else "jpeg"
    dec = "pngdec" if kind == "png" else "jpegdec"
    dec += " ! videoconvert ! video/x-raw,format=I420 ! jpegenc quality=90"  # 4:2:0, what RTP/JPEG (RFC 2435) carries
    factory.set_launch(
        f'( multifilesrc location="{pattern}" index={first} loop={"true" if loop else "false"} '
        f'caps="image/{kind},framerate=10/1" ! {dec} ! rtpjpegpay name=pay0 pt=26 )'
    )
    factory.set_shared(False)  # each client gets the sequence from its first frame
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.exit(f"rtsp_serve.py: cannot listen on 127.0.0.1:{port}")
    print(f"serving rtsp://127.0.0.1:{port}/cam", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
