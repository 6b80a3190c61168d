/*
 * exec_command.h - the check of runtime_api_address that faas_runtime_new
 * makes (exec_command.c). A new COMMAND instance is faas_cmd_inst_new
 * (faas_int.h).
 */
#ifndef FAAS_EXEC_COMMAND_H
#define FAAS_EXEC_COMMAND_H

/*
 * 0 when COMMAND endpoints may listen on `addr` (NULL or "" is the default,
 * 127.0.0.1): a numeric loopback address (127.0.0.0/8, ::1, or ::ffff:127.x),
 * or any address when allow_remote is 1; else FAAS_EINVAL. A name is
 * refused without allow_remote: where it leads is not known until bound.
 */
int faas_cmd_address_check(const char *addr, int allow_remote);

#endif /* FAAS_EXEC_COMMAND_H */
