/* doppel — command-line front door. Parses, prints, and calls the library. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "doppel/doppel.h"

static const cli_command commands[] = {
    {"version", "print the version and build information", cmd_version},
    {"classify", "train or evaluate an image classifier (Fashion-MNIST, folders)", cmd_classify},
    {"gan", "train GANs, sample them, measure them (every output labelled synthetic)", cmd_gan},
    {"watermark", "check images for doppel's invisible watermark", cmd_watermark},
    {"faces", "find faces in images", cmd_faces},
    {"detect", "is this face real or AI-generated? (also: detect train, detect eval)", cmd_detect},
    {"model", "import models (original MesoNet Keras weights) and inspect checkpoints", cmd_model},
    {"scan", "scan videos (files, cameras, streams) for deepfaked faces, frame by frame", cmd_scan},
    {"serve", "local web page and HTTP API: drop in a photo or video, see the verdict", cmd_serve},
    {"bench", "benchmark doppel against PyTorch and ONNX Runtime", cmd_bench},
};

static void usage(FILE *f) {
    fprintf(f,
            "doppel %s — generate and detect synthetic media\n\n"
            "usage: doppel <command> [options]\n\ncommands:\n",
            DP_VERSION_STRING);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n'doppel <command> --help' tells more about each.\n");
}

int cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("doppel %s (C11, built %s)\n", DP_VERSION_STRING, __DATE__);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) return cmd_version(0, NULL);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "doppel: unknown command '%s' (see 'doppel --help')\n", argv[1]);
    return 2;
}
