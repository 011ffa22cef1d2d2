// Failure messages and stack traces carried as a payload (a failure's encodedAttributes), so that the payload
// codec encrypts them too: a crash's last log line can be in a message. The workers use it when a key is
// configured (lib/codec.ts); any client reads such failures without it. CommonJS, because the SDK require()s
// it on the worker's main thread and bundles it into the workflow code.
const { DefaultFailureConverter } = require('@temporalio/common');

exports.failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
