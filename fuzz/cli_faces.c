/* fuzz_cli: doppel faces's option parser (see cli_classify.c). Folders named on the command line are
 * listed (not recursively), nothing is decoded. */
#include "cli/cmd_faces.c"

int fz_cli_faces(int argc, char **argv);
int fz_cli_faces(int argc, char **argv) {
    faces_opts o = {0};
    file_list files = {0};
    int rc = parse_opts(argc, argv, &o, &files);
    if (rc < 0) list_free(&files);
    return rc;
}
