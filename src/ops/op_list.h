/* The op table: one line per op, in one place. DP_OP(enum id, definition).
 * The definition (shape rule, forward, backward) lives in the op_*.c file of
 * its family. tests/test_ops_grad.c walks this list: an op without a
 * finite-difference gradient case there fails the suite. */
DP_OP(DP_OP_INPUT, dp_op_input)
DP_OP(DP_OP_PARAM, dp_op_param)
/* op_elementwise.c */
DP_OP(DP_OP_ADD, dp_op_add)
DP_OP(DP_OP_SUB, dp_op_sub)
DP_OP(DP_OP_MUL, dp_op_mul)
DP_OP(DP_OP_DIV, dp_op_div)
DP_OP(DP_OP_SCALE, dp_op_scale)
DP_OP(DP_OP_RELU, dp_op_relu)
DP_OP(DP_OP_LEAKY_RELU, dp_op_leaky_relu)
DP_OP(DP_OP_ELU, dp_op_elu)
DP_OP(DP_OP_TANH, dp_op_tanh)
DP_OP(DP_OP_SIGMOID, dp_op_sigmoid)
DP_OP(DP_OP_DROPOUT, dp_op_dropout)
/* op_matmul.c */
DP_OP(DP_OP_MATMUL, dp_op_matmul)
DP_OP(DP_OP_DENSE, dp_op_dense)
/* op_conv.c */
DP_OP(DP_OP_CONV2D, dp_op_conv2d)
DP_OP(DP_OP_CONV_TRANSPOSE2D, dp_op_conv_transpose2d)
/* op_norm.c */
DP_OP(DP_OP_BATCHNORM2D, dp_op_batchnorm2d)
/* op_pool.c */
DP_OP(DP_OP_MAXPOOL2D, dp_op_maxpool2d)
DP_OP(DP_OP_AVGPOOL2D, dp_op_avgpool2d)
DP_OP(DP_OP_GLOBAL_AVGPOOL, dp_op_global_avgpool)
DP_OP(DP_OP_UPSAMPLE_NEAREST, dp_op_upsample_nearest)
DP_OP(DP_OP_UPSAMPLE_BILINEAR, dp_op_upsample_bilinear)
/* op_shape.c */
DP_OP(DP_OP_RESHAPE, dp_op_reshape)
DP_OP(DP_OP_CONCAT, dp_op_concat)
DP_OP(DP_OP_SLICE, dp_op_slice)
DP_OP(DP_OP_STOP_GRADIENT, dp_op_stop_gradient)
/* op_reduce.c */
DP_OP(DP_OP_SUM, dp_op_sum)
DP_OP(DP_OP_MEAN, dp_op_mean)
/* op_softmax.c */
DP_OP(DP_OP_SOFTMAX, dp_op_softmax)
DP_OP(DP_OP_LOG_SOFTMAX, dp_op_log_softmax)
/* op_loss.c */
DP_OP(DP_OP_BCE_WITH_LOGITS, dp_op_bce_with_logits)
DP_OP(DP_OP_BCE, dp_op_bce)
DP_OP(DP_OP_MSE, dp_op_mse)
DP_OP(DP_OP_L1, dp_op_l1)
DP_OP(DP_OP_CROSS_ENTROPY, dp_op_cross_entropy)
