/*
 * durable_redis.h - what the Redis engine's files share.
 */
#ifndef FAAS_DURABLE_REDIS_H
#define FAAS_DURABLE_REDIS_H

/* The Lua script of every operation (durable_redis_script.c). */
extern const char faas_durable_redis_script[];

#endif
