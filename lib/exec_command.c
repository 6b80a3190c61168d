/*
 * exec_command.c - COMMAND instances over the Lambda Runtime API.
 * (Being written: until then COMMAND instances cannot start.)
 */
#include "faas_int.h"

int faas_cmd_inst_new(struct faas_instance *inst, char ***envp)
{
    (void)inst;
    *envp = NULL;
    return FAAS_ESYS;
}

void faas_cmd_send(struct faas_instance *inst, struct faas_inv *inv)
{
    (void)inst;
    (void)inv;
}

void faas_cmd_inst_free(struct faas_instance *inst)
{
    (void)inst;
}
