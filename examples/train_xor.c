/* The README's example: a 2-8-1 network learns XOR with Adam. */
#include <doppel/doppel.h>
#include <stdio.h>

int main(void) {
    dp_ctx *ctx; dp_graph *g; dp_paramset *ps; dp_optim *opt;
    dp_ctx_new(&(dp_ctx_opts){.threads = 1, .seed = 1}, &ctx);
    dp_graph_new(ctx, &g);
    dp_paramset_new(ctx, &ps);
    dp_node *x = dp_input(g, "x", 2, (int64_t[]){4, 2}), *t = dp_input(g, "t", 2, (int64_t[]){4, 1});
    dp_node *h = dp_tanh(g, dp_nn_dense(g, ps, "fc1", x, 8, 1, NULL));
    dp_node *y = dp_nn_dense(g, ps, "fc2", h, 1, 1, NULL);
    dp_node *loss = dp_bce_with_logits(g, y, t);
    if (dp_graph_compile(g) != DP_OK) { fprintf(stderr, "%s\n", dp_ctx_error(ctx)); return 1; }
    dp_optim_new(ps, &(dp_optim_opts){.kind = DP_OPTIM_ADAM, .lr = 0.05f}, &opt);
    dp_tensor_copy_from(dp_node_value(x), (float[]){0, 0, 0, 1, 1, 0, 1, 1}, 8);
    dp_tensor_copy_from(dp_node_value(t), (float[]){0, 1, 1, 0}, 4);
    dp_graph_set_training(g, 1);
    for (int step = 0; step < 500; step++) {
        dp_graph_run(g);
        dp_optim_zero_grad(opt);
        dp_graph_backward(g, loss, 0, NULL);
        dp_optim_step(opt);
    }
    const float *out = dp_tensor_f32(dp_node_value(y)), *l = dp_tensor_f32(dp_node_value(loss));
    printf("loss %.4f, logits %.2f %.2f %.2f %.2f\n", l[0], out[0], out[1], out[2], out[3]);
    int ok = l[0] < 0.05f && out[0] < 0 && out[1] > 0 && out[2] > 0 && out[3] < 0;
    dp_optim_free(opt); dp_paramset_free(ps); dp_graph_free(g); dp_ctx_free(ctx);
    return ok ? 0 : 1;
}
