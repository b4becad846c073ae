/*
 * taskerd: the tasker server. Until the orchestration services land it
 * serves the standard services (health, reflection) on the runtime.
 *
 * Usage: taskerd [--config PATH] [--section.key=value ...]
 * Settings come from the INI file (default SYSCONFDIR/tasker/taskerd.conf
 * when it exists), TASKER_<SECTION>_<KEY> variables and the command line.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tasker/rpc.h"

extern const unsigned char std_descriptor_set[];
extern const unsigned long std_descriptor_set_len;

static void usage(FILE *out)
{
	fprintf(out, "usage: taskerd [--config PATH] [--section.key=value ...]\n"
	             "       taskerd --help | --version\n"
	             "See taskerd.conf for every key; each is also TASKER_<SECTION>_<KEY>.\n");
}

int main(int argc, char **argv)
{
	const char *config_path = getenv("TASKER_CONFIG");
	int explicit_config = config_path != NULL;
	char **rest = calloc((size_t)argc + 1, sizeof *rest);
	int nrest = 0;
	if (rest == NULL)
		return 1;
	rest[nrest++] = argv[0];
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			free(rest);
			return 0;
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("taskerd %s\n", PACKAGE_VERSION);
			free(rest);
			return 0;
		}
		if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) &&
		    i + 1 < argc) {
			config_path = argv[++i];
			explicit_config = 1;
		} else if (strncmp(argv[i], "--config=", 9) == 0) {
			config_path = argv[i] + 9;
			explicit_config = 1;
		} else {
			rest[nrest++] = argv[i];
		}
	}
	if (!explicit_config) {
		static const char def[] = SYSCONFDIR "/tasker/taskerd.conf";
		config_path = access(def, R_OK) == 0 ? def : NULL;
	}

	struct trpc_server_config cfg;
	trpc_server_config_init(&cfg);
	const char *why = NULL;
	if (trpc_server_config_load(&cfg, config_path, nrest, rest, NULL, NULL, &why) != 0) {
		fprintf(stderr, "taskerd: %s\n", why);
		usage(stderr);
		trpc_server_config_clear(&cfg);
		free(rest);
		return 2;
	}
	free(rest);

	trpc_server *srv = trpc_server_new(&cfg, &why);
	trpc_server_config_clear(&cfg);
	if (srv == NULL) {
		fprintf(stderr, "taskerd: %s\n", why);
		return 1;
	}
	struct trpc_descriptor_set sets[] = {{std_descriptor_set, std_descriptor_set_len}};
	if (trpc_health_register(srv) == NULL || trpc_reflection_register(srv, sets, 1) != 0) {
		fprintf(stderr, "taskerd: cannot register the standard services\n");
		trpc_server_free(srv);
		return 1;
	}
	if (trpc_server_start(srv, &why) != 0) {
		fprintf(stderr, "taskerd: %s\n", why);
		trpc_server_free(srv);
		return 1;
	}
	int rv = trpc_server_run_until_signal(srv);
	trpc_server_free(srv);
	return rv == 0 ? 0 : 1;
}
