/* Shared declarations of the CLI's subcommands. */
#ifndef DOPPEL_CLI_H
#define DOPPEL_CLI_H

typedef struct cli_command {
    const char *name;
    const char *help;
    int (*fn)(int argc, char **argv); /* argv[0] is the subcommand's name */
} cli_command;

int cmd_version(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_gan(int argc, char **argv);
int cmd_watermark(int argc, char **argv);
int cmd_faces(int argc, char **argv);
int cmd_detect(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_scan(int argc, char **argv);  /* cmd_scan.c: video (issue 6) */
int cmd_serve(int argc, char **argv); /* cmd_serve.c: local web page + HTTP API (issue 7) */

#endif
