/* H5Aexists on every group directly under the root or under model_weights of a Keras weight file. */
#include <hdf5.h>
#include <stdio.h>

static herr_t visit(hid_t g, const char *name, const H5L_info_t *info, void *op) {
    (void)info; (void)op;
    hid_t lg = H5Gopen2(g, name, H5P_DEFAULT);
    if (lg < 0) return 0;
    printf("H5Aexists(\"%s\", \"weight_names\") ...\n", name);
    fflush(stdout);
    htri_t ex = H5Aexists(lg, "weight_names");
    printf("  -> %d\n", (int)ex);
    H5Gclose(lg);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(argv[1], H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) { printf("H5Fopen failed\n"); return 1; }
    hid_t g = H5Gopen2(f, "model_weights", H5P_DEFAULT);
    if (g < 0) g = H5Gopen2(f, "/", H5P_DEFAULT);
    H5Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, visit, NULL);
    H5Gclose(g);
    H5Fclose(f);
    return 0;
}
