/* awscred — the access key an S3 request is signed with, found as the AWS
 * CLI finds it: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and
 * AWS_SESSION_TOKEN) from the environment win; else the profile (`profile`,
 * else AWS_PROFILE, else "default") of the shared-credentials file
 * (`file`, else AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials):
 *
 *   [default]
 *   aws_access_key_id = AKIA...
 *   aws_secret_access_key = ...
 *   aws_session_token = ...        ; optional
 *
 * Secrets are wiped (sodium_memzero) when replaced or freed.
 */
#ifndef MI_AWSCRED_H
#define MI_AWSCRED_H

#include "sinkd/sink.h"

struct aws_creds {
	char id[128];
	char secret[128];
	char token[2048];
	char source[320];     /* "the environment" or "FILE [profile]": for messages */
};

/* file, profile: "" for the defaults above.  Returns 0, or -errno with err
 * naming the file, the profile or the variable at fault. */
int aws_creds_load(const char *file, const char *profile, struct aws_creds *c, char err[SINK_ERR_LEN]);
void aws_creds_wipe(struct aws_creds *c);
#endif
