// The cancel token moved to the public header <knncluster/cancel_token.h> (installed with the
// client library); this path stays for code inside the tree that includes it by its old name.
#ifndef KNNCLUSTER_CLIENT_CPP_CANCEL_TOKEN_H_
#define KNNCLUSTER_CLIENT_CPP_CANCEL_TOKEN_H_

#include "knncluster/cancel_token.h"

#endif  // KNNCLUSTER_CLIENT_CPP_CANCEL_TOKEN_H_
