/* version.h - costmeshd's version: `costmeshd --version`, /healthz and
 * docs/openapi.yaml's info.version say it (the OpenAPI test compares). */
#ifndef CM_VERSION_H
#define CM_VERSION_H

#define CM_SERVER_VERSION "0.1.0"

#endif
