/* The chargeable events' names and Rf record types (charging.h): a leaf that the record
 * encoding (charging.c), the CDR lines and the Diameter client (charging_rf.c) share. */
#include "charging.h"

static const char *const charging_event_names[CHARGING_EVENT_COUNT] = {
    [CHARGING_DOC_CREATED] = "document-created",
    [CHARGING_DOC_REPLACED] = "document-replaced",
    [CHARGING_DOC_DELETED] = "document-deleted",
    [CHARGING_NODE_CHANGED] = "node-changed",
    [CHARGING_SUB_STARTED] = "subscription-started",
    [CHARGING_SUB_REFRESHED] = "subscription-refreshed",
    [CHARGING_SUB_ENDED] = "subscription-ended",
    [CHARGING_NOTIFY_SENT] = "notify-sent",
};

const char *charging_event_name(enum charging_event e)
{
    return (unsigned)e < CHARGING_EVENT_COUNT ? charging_event_names[e] : "unknown";
}

unsigned charging_record_type(enum charging_event e)
{
    switch (e) {
    case CHARGING_SUB_STARTED:
        return 2;
    case CHARGING_SUB_REFRESHED:
        return 3;
    case CHARGING_SUB_ENDED:
        return 4;
    default:
        return 1;
    }
}
