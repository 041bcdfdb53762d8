/* The op registry: maps op ids to their definitions (see op_list.h). */
#include "core/internal.h"

#define DP_OP(id, def) extern const dp_op_def def;
#include "ops/op_list.h"
#undef DP_OP

static const dp_op_def *const op_table[DP_OP_COUNT] = {
#define DP_OP(id, def) [id] = &def,
#include "ops/op_list.h"
#undef DP_OP
};

const dp_op_def *dp_op_get(int op) { return (op >= 0 && op < DP_OP_COUNT) ? op_table[op] : NULL; }
int dp_op_count(void) { return DP_OP_COUNT; }
const char *dp_op_name(int op) { return (op >= 0 && op < DP_OP_COUNT) ? op_table[op]->name : "?"; }
