/* Reading OpenCV cascade XML files (the format written by opencv_traincascade
 * and shipped in opencv-data) into a dp_face_detector.
 *
 *   <opencv_storage><cascade>
 *     <stageType>BOOST</stageType> <featureType>HAAR|LBP</featureType>
 *     <height>H</height> <width>W</width>
 *     <featureParams><maxCatCount>0|256</maxCatCount></featureParams>
 *     <stages><_>
 *       <stageThreshold>t</stageThreshold>
 *       <weakClassifiers><_>
 *         <internalNodes>left right feature threshold ...</internalNodes>   (Haar: 4 numbers a node;
 *         <leafValues>v0 v1 ...</leafValues></_>...                           LBP: 3 + 8 subset words)
 *     </_>...</stages>
 *     <features><_><rects><_>x y w h weight</_>...</rects><tilted>0|1</tilted></_>...   (Haar)
 *               <_><rect>x y w h</rect></_>...                                      (LBP)
 *   </cascade></opencv_storage>
 *
 * Every number, count and index is checked before use, so that evaluation
 * never reads outside its arrays whatever the file says. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "face/face_internal.h"
#include "io/data_internal.h"

#define FC_MAX_FILE_BYTES ((size_t)256 << 20)
#define FC_MAX_WIN 1024
#define FC_MAX_STAGES 10000
#define FC_MAX_TREES 1000000   /* in the whole cascade */
#define FC_MAX_TREE_NODES 1024 /* in one tree */
#define FC_MAX_NODES 4000000
#define FC_MAX_FEATURES 1000000

typedef struct loader {
    dp_ctx *ctx;
    const char *path;
    dp_face_detector *d;
    int cap_trees, cap_nodes, cap_leaves, cap_subsets;
    double *nums; /* scratch for number lists */
    int cap_nums;
} loader;

/* ------------------------------------------------------------ small helpers */
static int is_elem(const xmlNode *n, const char *name) {
    return n && n->type == XML_ELEMENT_NODE && (!name || !strcmp((const char *)n->name, name));
}
static xmlNode *first_elem(xmlNode *n) {
    for (n = n ? n->children : NULL; n; n = n->next)
        if (n->type == XML_ELEMENT_NODE) return n;
    return NULL;
}
static xmlNode *next_elem(xmlNode *n) {
    for (n = n ? n->next : NULL; n; n = n->next)
        if (n->type == XML_ELEMENT_NODE) return n;
    return NULL;
}
static xmlNode *child(xmlNode *n, const char *name) {
    for (xmlNode *c = first_elem(n); c; c = next_elem(c))
        if (is_elem(c, name)) return c;
    return NULL;
}
/* Element children of a sequence node (OpenCV writes each item as <_>). */
static long count_items(xmlNode *n) {
    long k = 0;
    for (xmlNode *c = first_elem(n); c; c = next_elem(c)) k++;
    return k;
}

static void *grow(loader *L, void *p, int *cap, int need, size_t elem) {
    if (need <= *cap) return p;
    int nc = *cap ? *cap : 64;
    while (nc < need) nc = nc > (1 << 29) ? need : nc * 2;
    void *q = dp_malloc(L->ctx, (size_t)nc * elem);
    if (!q) return NULL;
    if (p) {
        memcpy(q, p, (size_t)*cap * elem);
        dp_free(L->ctx, p);
    }
    *cap = nc;
    return q;
}

/* Parse the text of n as whitespace-separated numbers into L->nums (at most
 * max_count of them); *count receives how many. */
static dp_status parse_numbers(loader *L, xmlNode *n, const char *what, long max_count, int *count) {
    *count = 0;
    xmlChar *txt = xmlNodeGetContent(n);
    if (!txt) return dp_error(L->ctx, DP_ERR_NOMEM, "%s: %s: cannot read the element's text", L->path, what);
    const char *s = (const char *)txt;
    int k = 0;
    dp_status st = DP_OK;
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
        if (!*s) break;
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (end == s || !(*end == 0 || *end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) {
            const char *e = s;
            while (*e && *e != ' ' && *e != '\t' && *e != '\n' && *e != '\r' && e - s < 24) e++;
            st = dp_error(L->ctx, DP_ERR_FORMAT, "%s: %s: '%.*s' is not a number", L->path, what, (int)(e - s), s);
            break;
        }
        if (!isfinite(v)) {
            st = dp_error(L->ctx, DP_ERR_FORMAT, "%s: %s: number %d is not finite", L->path, what, k + 1);
            break;
        }
        if (k >= max_count) {
            st = dp_error(L->ctx, DP_ERR_FORMAT, "%s: %s: more than %ld numbers", L->path, what, max_count);
            break;
        }
        if (k >= L->cap_nums) {
            double *q = grow(L, L->nums, &L->cap_nums, k + 1, sizeof(double));
            if (!q) {
                st = dp_error(L->ctx, DP_ERR_NOMEM, "%s: %s: out of memory", L->path, what);
                break;
            }
            L->nums = q;
        }
        L->nums[k++] = v;
        s = end;
    }
    xmlFree(txt);
    *count = k;
    return st;
}

static int as_int(double v, long lo, long hi, int *out) {
    if (!(v >= (double)lo && v <= (double)hi) || v != floor(v)) return 0;
    *out = (int)v;
    return 1;
}

/* An element holding one integer in [lo,hi]. */
static dp_status read_int(loader *L, xmlNode *parent, const char *name, long lo, long hi, int required, int *out) {
    xmlNode *n = child(parent, name);
    if (!n) {
        if (!required) return DP_OK;
        return dp_error(L->ctx, DP_ERR_FORMAT, "%s: <%s> is missing", L->path, name);
    }
    int k;
    dp_status st = parse_numbers(L, n, name, 1, &k);
    if (st) return st;
    if (k != 1 || !as_int(L->nums[0], lo, hi, out))
        return dp_error(L->ctx, DP_ERR_FORMAT, "%s: <%s> must be one integer in [%ld, %ld]", L->path, name, lo, hi);
    return DP_OK;
}

/* Text of a child element (trimmed) into buf; "" if absent. */
static void read_word(xmlNode *parent, const char *name, char *buf, size_t n) {
    buf[0] = 0;
    xmlNode *c = child(parent, name);
    if (!c) return;
    xmlChar *t = xmlNodeGetContent(c);
    if (!t) return;
    const char *s = (const char *)t;
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
    size_t k = 0;
    while (s[k] && s[k] != ' ' && s[k] != '\n' && s[k] != '\t' && s[k] != '\r' && k + 1 < n) {
        buf[k] = s[k];
        k++;
    }
    buf[k] = 0;
    xmlFree(t);
}

/* ------------------------------------------------------------ the parts */
static dp_status read_stages(loader *L, xmlNode *stages_node) {
    dp_face_detector *d = L->d;
    long ns = count_items(stages_node);
    if (ns < 1) return dp_error(L->ctx, DP_ERR_FORMAT, "%s: <stages> has no stage", L->path);
    if (ns > FC_MAX_STAGES)
        return dp_error(L->ctx, DP_ERR_FORMAT, "%s: <stages> has %ld stages (at most %d accepted)", L->path, ns,
                        FC_MAX_STAGES);
    d->stages = dp_calloc(L->ctx, (size_t)ns * sizeof *d->stages);
    if (!d->stages) return dp_error(L->ctx, DP_ERR_NOMEM, "%s: out of memory", L->path);
    const int lbp = d->kind == FC_LBP;
    const int node_step = lbp ? 3 + FC_LBP_SUBSET : 4;
    char what[160];
    int si = 0;
    for (xmlNode *sn = first_elem(stages_node); sn; sn = next_elem(sn), si++) {
        fc_stage *stg = &d->stages[si];
        xmlNode *thr = child(sn, "stageThreshold");
        snprintf(what, sizeof what, "stage %d: <stageThreshold>", si);
        if (!thr) return dp_error(L->ctx, DP_ERR_FORMAT, "%s: %s is missing", L->path, what);
        int k;
        dp_status st = parse_numbers(L, thr, what, 1, &k);
        if (st) return st;
        if (k != 1) return dp_error(L->ctx, DP_ERR_FORMAT, "%s: %s must hold one number", L->path, what);
        stg->threshold = (float)L->nums[0] - 1e-5f; /* OpenCV's THRESHOLD_EPS */
        xmlNode *weak = child(sn, "weakClassifiers");
        long nw = weak ? count_items(weak) : 0;
        if (nw < 1)
            return dp_error(L->ctx, DP_ERR_FORMAT, "%s: stage %d: <weakClassifiers> is missing or empty", L->path, si);
        if (nw > FC_MAX_TREES - d->n_trees)
            return dp_error(L->ctx, DP_ERR_FORMAT, "%s: stage %d: more than %d weak classifiers in the cascade",
                            L->path, si, FC_MAX_TREES);
        stg->first_tree = d->n_trees;
        stg->ntrees = (int)nw;
        int wi = 0;
        for (xmlNode *wn = first_elem(weak); wn; wn = next_elem(wn), wi++) {
            xmlNode *in = child(wn, "internalNodes"), *lv = child(wn, "leafValues");
            if (!in || !lv)
                return dp_error(L->ctx, DP_ERR_FORMAT, "%s: stage %d, weak classifier %d: <%s> is missing", L->path,
                                si, wi, !in ? "internalNodes" : "leafValues");
            snprintf(what, sizeof what, "stage %d, weak classifier %d: <internalNodes>", si, wi);
            st = parse_numbers(L, in, what, (long)FC_MAX_TREE_NODES * node_step, &k);
            if (st) return st;
            if (k < node_step || k % node_step)
                return dp_error(L->ctx, DP_ERR_FORMAT, "%s: %s: %d numbers, not a positive multiple of %d (%s)",
                                L->path, what, k, node_step,
                                lbp ? "left right feature + 8 subset words" : "left right feature threshold");
            int nn = k / node_step;
            if (nn > FC_MAX_NODES - d->n_nodes)
                return dp_error(L->ctx, DP_ERR_FORMAT, "%s: more than %d tree nodes", L->path, FC_MAX_NODES);
            fc_node *nodes = grow(L, d->nodes, &L->cap_nodes, d->n_nodes + nn, sizeof *nodes);
            if (!nodes) return dp_error(L->ctx, DP_ERR_NOMEM, "%s: out of memory", L->path);
            d->nodes = nodes;
            if (lbp) {
                uint32_t *sub = grow(L, d->subsets, &L->cap_subsets, (d->n_nodes + nn) * FC_LBP_SUBSET, sizeof *sub);
                if (!sub) return dp_error(L->ctx, DP_ERR_NOMEM, "%s: out of memory", L->path);
                d->subsets = sub;
            }
            for (int i = 0; i < nn; i++) {
                const double *v = L->nums + (size_t)i * node_step;
                fc_node *nd = &d->nodes[d->n_nodes + i];
                if (!as_int(v[0], -nn, nn - 1, &nd->left) || !as_int(v[1], -nn, nn - 1, &nd->right))
                    return dp_error(L->ctx, DP_ERR_FORMAT, "%s: %s: node %d: child indices %g %g out of range",
                                    L->path, what, i, v[0], v[1]);
                /* Children come after their parent (trees are stored in pre-order), which
                 * also guarantees that evaluation ends. */
                if ((nd->left > 0 && nd->left <= i) || (nd->right > 0 && nd->right <= i))
                    return dp_error(L->ctx, DP_ERR_FORMAT, "%s: %s: node %d points back to node %d", L->path, what, i,
                                    nd->left > 0 && nd->left <= i ? nd->left : nd->right);
                if (!as_int(v[2], 0, FC_MAX_FEATURES - 1, &nd->feature))
                    return dp_error(L->ctx, DP_ERR_FORMAT, "%s: %s: node %d: feature index %g out of range", L->path,
                                    what, i, v[2]);
                if (lbp) {
                    nd->threshold = 0.f;
                    for (int j = 0; j < FC_LBP_SUBSET; j++) {
                        int w;
                        if (!as_int(v[3 + j], INT32_MIN, INT32_MAX, &w))
                            return dp_error(L->ctx, DP_ERR_FORMAT,
                                            "%s: %s: node %d: subset word %g is not a 32-bit integer", L->path, what, i,
                                            v[3 + j]);
                        d->subsets[(size_t)(d->n_nodes + i) * FC_LBP_SUBSET + j] = (uint32_t)w;
                    }
                } else {
                    nd->threshold = (float)v[3];
                }
            }
            snprintf(what, sizeof what, "stage %d, weak classifier %d: <leafValues>", si, wi);
            st = parse_numbers(L, lv, what, (long)nn + 1, &k);
            if (st) return st;
            if (k != nn + 1)
                return dp_error(L->ctx, DP_ERR_FORMAT, "%s: %s: %d values for %d nodes (expected %d)", L->path, what,
                                k, nn, nn + 1);
            float *leaves = grow(L, d->leaves, &L->cap_leaves, d->n_leaves + k, sizeof *leaves);
            if (!leaves) return dp_error(L->ctx, DP_ERR_NOMEM, "%s: out of memory", L->path);
            d->leaves = leaves;
            for (int i = 0; i < k; i++) d->leaves[d->n_leaves + i] = (float)L->nums[i];
            fc_tree *trees = grow(L, d->trees, &L->cap_trees, d->n_trees + 1, sizeof *trees);
            if (!trees) return dp_error(L->ctx, DP_ERR_NOMEM, "%s: out of memory", L->path);
            d->trees = trees;
            d->trees[d->n_trees] = (fc_tree){.first_node = d->n_nodes, .node_count = nn, .first_leaf = d->n_leaves};
            d->n_trees++;
            d->n_nodes += nn;
            d->n_leaves += k;
            if (nn > d->max_nodes_per_tree) d->max_nodes_per_tree = nn;
        }
    }
    d->n_stages = (int)ns;
    return DP_OK;
}

static dp_status read_rect(loader *L, xmlNode *n, const char *what, int nvals, fc_rect *r) {
    int k;
    dp_status st = parse_numbers(L, n, what, nvals, &k);
    if (st) return st;
    if (k != nvals)
        return dp_error(L->ctx, DP_ERR_FORMAT, "%s: %s: %d numbers (expected %d: x y width height%s)", L->path, what,
                        k, nvals, nvals == 5 ? " weight" : "");
    const double *v = L->nums;
    if (!as_int(v[0], -FC_MAX_WIN, FC_MAX_WIN, &r->x) || !as_int(v[1], -FC_MAX_WIN, FC_MAX_WIN, &r->y) ||
        !as_int(v[2], 1, FC_MAX_WIN, &r->w) || !as_int(v[3], 1, FC_MAX_WIN, &r->h))
        return dp_error(L->ctx, DP_ERR_FORMAT, "%s: %s: '%g %g %g %g' is not a rectangle (integers, positive size)",
                        L->path, what, v[0], v[1], v[2], v[3]);
    r->weight = nvals == 5 ? (float)v[4] : 0.f;
    return DP_OK;
}

static dp_status read_features(loader *L, xmlNode *fnode) {
    dp_face_detector *d = L->d;
    long nf = count_items(fnode);
    if (nf < 1) return dp_error(L->ctx, DP_ERR_FORMAT, "%s: <features> is empty", L->path);
    if (nf > FC_MAX_FEATURES)
        return dp_error(L->ctx, DP_ERR_FORMAT, "%s: <features> has %ld items (at most %d accepted)", L->path, nf,
                        FC_MAX_FEATURES);
    d->features = dp_calloc(L->ctx, (size_t)nf * sizeof *d->features);
    if (!d->features) return dp_error(L->ctx, DP_ERR_NOMEM, "%s: out of memory", L->path);
    const int W = d->win_w, H = d->win_h;
    char what[128];
    int fi = 0;
    for (xmlNode *fn = first_elem(fnode); fn; fn = next_elem(fn), fi++) {
        fc_feature *f = &d->features[fi];
        if (d->kind == FC_LBP) {
            xmlNode *rn = child(fn, "rect");
            snprintf(what, sizeof what, "feature %d: <rect>", fi);
            if (!rn) return dp_error(L->ctx, DP_ERR_FORMAT, "%s: %s is missing", L->path, what);
            dp_status st = read_rect(L, rn, what, 4, &f->r[0]);
            if (st) return st;
            const fc_rect *r = &f->r[0];
            if (r->x < 0 || r->y < 0 || r->x + 3 * r->w > W || r->y + 3 * r->h > H)
                return dp_error(L->ctx, DP_ERR_FORMAT, "%s: %s: the 3x3 cells of %dx%d at (%d,%d) leave the %dx%d window",
                                L->path, what, r->w, r->h, r->x, r->y, W, H);
            f->nrect = 1;
            continue;
        }
        xmlNode *rs = child(fn, "rects");
        if (!rs) return dp_error(L->ctx, DP_ERR_FORMAT, "%s: feature %d: <rects> is missing", L->path, fi);
        long nr = count_items(rs);
        if (nr < 1 || nr > 3)
            return dp_error(L->ctx, DP_ERR_FORMAT, "%s: feature %d: <rects> has %ld rectangles (1 to 3 expected)",
                            L->path, fi, nr);
        f->tilted = 0;
        xmlNode *tn = child(fn, "tilted");
        if (tn) {
            int t;
            snprintf(what, sizeof what, "feature %d: <tilted>", fi);
            dp_status st = read_int(L, fn, "tilted", 0, 1, 1, &t);
            if (st) return dp_error(L->ctx, DP_ERR_FORMAT, "%s: %s must be 0 or 1", L->path, what);
            f->tilted = t;
        }
        int ri = 0;
        for (xmlNode *rn = first_elem(rs); rn; rn = next_elem(rn), ri++) {
            snprintf(what, sizeof what, "feature %d, rectangle %d", fi, ri);
            dp_status st = read_rect(L, rn, what, 5, &f->r[ri]);
            if (st) return st;
            const fc_rect *r = &f->r[ri];
            int ok = f->tilted ? (r->x - r->h >= 0 && r->x + r->w <= W && r->y >= 0 && r->y + r->w + r->h <= H)
                               : (r->x >= 0 && r->y >= 0 && r->x + r->w <= W && r->y + r->h <= H);
            if (!ok)
                return dp_error(L->ctx, DP_ERR_FORMAT, "%s: %s: %s%dx%d at (%d,%d) leaves the %dx%d window", L->path,
                                what, f->tilted ? "tilted " : "", r->w, r->h, r->x, r->y, W, H);
        }
        f->nrect = (int)nr;
        if (f->tilted) d->has_tilted = 1;
    }
    d->n_features = (int)nf;
    return DP_OK;
}

static dp_status read_cascade(loader *L, xmlDoc *doc) {
    dp_face_detector *d = L->d;
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!is_elem(root, "opencv_storage"))
        return dp_error(L->ctx, DP_ERR_FORMAT, "%s: the root element is <%s>, not <opencv_storage>: not an OpenCV file",
                        L->path, root ? (const char *)root->name : "(none)");
    xmlNode *c = first_elem(root);
    if (!c) return dp_error(L->ctx, DP_ERR_FORMAT, "%s: <opencv_storage> is empty", L->path);
    xmlChar *type = xmlGetProp(c, (const xmlChar *)"type_id");
    int old = type && !strcmp((const char *)type, "opencv-haar-classifier");
    if (type) xmlFree(type);
    if (old || (!child(c, "stageType") && child(c, "size") && child(c, "stages")))
        return dp_error(L->ctx, DP_ERR_UNSUPPORTED,
                        "%s: <%s> is in the obsolete OpenCV 1.x cascade format (opencv-haar-classifier); only the "
                        "current format (opencv_traincascade, OpenCV >= 2.4) is read",
                        L->path, (const char *)c->name);
    char word[64];
    read_word(c, "stageType", word, sizeof word);
    if (!word[0]) return dp_error(L->ctx, DP_ERR_FORMAT, "%s: <%s>: <stageType> is missing", L->path, (const char *)c->name);
    if (strcmp(word, "BOOST"))
        return dp_error(L->ctx, DP_ERR_FORMAT, "%s: <stageType> is '%s', expected BOOST", L->path, word);
    read_word(c, "featureType", word, sizeof word);
    if (!strcmp(word, "HAAR")) d->kind = FC_HAAR;
    else if (!strcmp(word, "LBP")) d->kind = FC_LBP;
    else if (!strcmp(word, "HOG"))
        return dp_error(L->ctx, DP_ERR_UNSUPPORTED, "%s: HOG cascades are not supported (nor by OpenCV >= 3)", L->path);
    else
        return dp_error(L->ctx, DP_ERR_FORMAT, "%s: <featureType> is '%s', expected HAAR or LBP", L->path,
                        word[0] ? word : "(missing)");
    dp_status st;
    if ((st = read_int(L, c, "width", 1, FC_MAX_WIN, 1, &d->win_w))) return st;
    if ((st = read_int(L, c, "height", 1, FC_MAX_WIN, 1, &d->win_h))) return st;
    if (d->kind == FC_HAAR && (d->win_w < 3 || d->win_h < 3))
        return dp_error(L->ctx, DP_ERR_FORMAT, "%s: a %dx%d window is too small (3x3 at least)", L->path, d->win_w,
                        d->win_h);
    xmlNode *fp = child(c, "featureParams");
    if (!fp) return dp_error(L->ctx, DP_ERR_FORMAT, "%s: <featureParams> is missing", L->path);
    int ncat = 0;
    if ((st = read_int(L, fp, "maxCatCount", 0, 1 << 20, 1, &ncat))) return st;
    if (d->kind == FC_HAAR && ncat != 0)
        return dp_error(L->ctx, DP_ERR_FORMAT, "%s: <maxCatCount> is %d; Haar cascades have 0", L->path, ncat);
    if (d->kind == FC_LBP && ncat != 256)
        return dp_error(L->ctx, DP_ERR_FORMAT, "%s: <maxCatCount> is %d; LBP cascades have 256", L->path, ncat);
    xmlNode *sn = child(c, "stages");
    if (!sn) return dp_error(L->ctx, DP_ERR_FORMAT, "%s: <stages> is missing", L->path);
    if ((st = read_stages(L, sn))) return st;
    xmlNode *fn = child(c, "features");
    if (!fn) return dp_error(L->ctx, DP_ERR_FORMAT, "%s: <features> is missing", L->path);
    if ((st = read_features(L, fn))) return st;
    for (int i = 0; i < d->n_nodes; i++)
        if (d->nodes[i].feature >= d->n_features)
            return dp_error(L->ctx, DP_ERR_FORMAT, "%s: a tree node uses feature %d but <features> has %d", L->path,
                            d->nodes[i].feature, d->n_features);
    return DP_OK;
}

/* ------------------------------------------------------------ public */
void dp_face_detector_free(dp_face_detector *d) {
    if (!d) return;
    dp_ctx *ctx = d->ctx;
    dp_free(ctx, d->path);
    dp_free(ctx, d->stages);
    dp_free(ctx, d->trees);
    dp_free(ctx, d->nodes);
    dp_free(ctx, d->subsets);
    dp_free(ctx, d->leaves);
    dp_free(ctx, d->features);
    dp_free(ctx, d);
}

dp_status dp_face_detector_load(dp_ctx *ctx, const char *path, dp_face_detector **out) {
    if (!ctx || !path || !out) return dp_error(ctx, DP_ERR_NULL, "dp_face_detector_load: NULL argument");
    *out = NULL;
    uint8_t *buf;
    size_t n;
    dp_status st = dp_io_read_file(ctx, path, FC_MAX_FILE_BYTES, &buf, &n);
    if (st) return st;
    if (n > (size_t)INT32_MAX) {
        dp_free(ctx, buf);
        return dp_error(ctx, DP_ERR_NOMEM, "%s: too big", path);
    }
    xmlInitParser();
    xmlParserCtxtPtr pc = xmlNewParserCtxt();
    if (!pc) {
        dp_free(ctx, buf);
        return dp_error(ctx, DP_ERR_NOMEM, "%s: cannot create an XML parser", path);
    }
    /* No network, no entity substitution, no messages on stderr: errors are reported below. */
    xmlDoc *doc = xmlCtxtReadMemory(pc, (const char *)buf, (int)n, path, NULL,
                                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    dp_free(ctx, buf);
    if (!doc) {
        const xmlError *e = xmlCtxtGetLastError(pc);
        char msg[256];
        snprintf(msg, sizeof msg, "%s", e && e->message ? e->message : "unknown error");
        size_t k = strlen(msg);
        while (k && (msg[k - 1] == '\n' || msg[k - 1] == ' ')) msg[--k] = 0;
        int line = e ? e->line : 0;
        xmlFreeParserCtxt(pc);
        return dp_error(ctx, DP_ERR_FORMAT, "%s: not well-formed XML (line %d: %s)", path, line, msg);
    }
    xmlFreeParserCtxt(pc);
    loader L = {.ctx = ctx, .path = path};
    dp_face_detector *d = dp_calloc(ctx, sizeof *d);
    size_t plen = strlen(path);
    if (!d || !(d->path = dp_malloc(ctx, plen + 1))) {
        dp_free(ctx, d);
        xmlFreeDoc(doc);
        return dp_error(ctx, DP_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(d->path, path, plen + 1);
    d->ctx = ctx;
    L.d = d;
    st = read_cascade(&L, doc);
    xmlFreeDoc(doc);
    dp_free(ctx, L.nums);
    if (st) {
        dp_face_detector_free(d);
        return st;
    }
    *out = d;
    return DP_OK;
}

dp_status dp_face_detector_default(dp_ctx *ctx, dp_face_detector **out) {
    if (!ctx || !out) return dp_error(ctx, DP_ERR_NULL, "dp_face_detector_default: NULL argument");
    *out = NULL;
    const char *env = getenv("DP_FACE_CASCADE");
    if (env && *env) return dp_face_detector_load(ctx, env, out);
    const char *dirs = DP_FACE_CASCADE_DIRS;
    while (*dirs) {
        const char *e = strchr(dirs, ':');
        size_t len = e ? (size_t)(e - dirs) : strlen(dirs);
        char p[512];
        snprintf(p, sizeof p, "%.*s/%s", (int)len, dirs, DP_FACE_CASCADE_DEFAULT);
        FILE *f = fopen(p, "rb");
        if (f) {
            fclose(f);
            return dp_face_detector_load(ctx, p, out);
        }
        dirs += len;
        if (*dirs == ':') dirs++;
    }
    return dp_error(ctx, DP_ERR_NOT_FOUND,
                    "the face cascade %s was not found in %s: install OpenCV's cascades (Debian/Ubuntu: apt-get "
                    "install opencv-data), or name a cascade file (DP_FACE_CASCADE or --cascade)",
                    DP_FACE_CASCADE_DEFAULT, DP_FACE_CASCADE_DIRS);
}

void dp_face_detector_info(const dp_face_detector *d, int *win_w, int *win_h, int *n_stages, const char **type) {
    if (win_w) *win_w = d ? d->win_w : 0;
    if (win_h) *win_h = d ? d->win_h : 0;
    if (n_stages) *n_stages = d ? d->n_stages : 0;
    if (type) *type = !d ? "" : d->kind == FC_LBP ? "LBP" : "HAAR";
}
