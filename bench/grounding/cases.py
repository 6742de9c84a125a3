"""Grounding benchmark cases: instructions phrased the way SOP authors write them.

``expected`` is the ``gid`` of the element a careful person would act on ("a|b" when either is
right), or ``ESCALATE`` when a person should be asked (absent, ambiguous, hidden, disabled, or
behind a modal dialog). ``action``/``value`` are checked when given: typing a description
instead of a value is a wrong act too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ESCALATE = "escalate"


@dataclass(frozen=True)
class Case:
    page: str
    instruction: str
    expected: str
    action: str | None = None
    value: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)


E = ESCALATE
C = Case

CASES: list[Case] = [
    # ---- Gmail inbox with the compose window open (a non-modal dialog)
    C("gmail_compose", "Click Compose", "compose", "click"),
    C("gmail_compose", "Type {{investor_email}} into the To field", "compose-to", "fill",
      "{{investor_email}}"),
    C("gmail_compose", "Enter {{subject}} in the Subject field", "compose-subject", "fill",
      "{{subject}}"),
    C("gmail_compose", "Type hello into the Subject line", "compose-subject", "fill", "hello"),
    C("gmail_compose", "Type {{body}} into the message body", "compose-body", "fill", "{{body}}"),
    C("gmail_compose", "Click Send", "compose-send", "click"),
    C("gmail_compose", "Click the Send button", "compose-send", "click"),
    C("gmail_compose", "Click Discard draft", "compose-discard", "click"),
    C("gmail_compose", "Click the Attach files button", "compose-attach", "click"),
    C("gmail_compose", "Attach a file", "compose-attach", "click"),
    C("gmail_compose", "Click Insert link", "compose-link", "click"),
    C("gmail_compose", "Click the close button", "compose-close", "click"),
    C("gmail_compose", "Type invoices into the Search mail box", "search", "fill", "invoices"),
    C("gmail_compose", "Click the Search mail button", "search-btn", "click"),
    C("gmail_compose", "Click Older", "older", "click"),
    C("gmail_compose", "Click Newer", E),  # aria-disabled
    C("gmail_compose", "Open the email from Sarah", E),  # Sarah Chen and Sarah O'Neil
    C("gmail_compose", "Open the email from Sarah Chen", "row-sarah|row-sarah-subject", "click"),
    C("gmail_compose", "Open the email from Marcus Webb", "row-marcus|row-marcus-subject",
      "click"),
    C("gmail_compose", "Star the email from Sarah Chen", "row-sarah-star", "click"),
    C("gmail_compose", "Star the email from GitHub", "row-github-star", "click"),
    C("gmail_compose", "Archive the email from Sarah Chen", E),  # hover-only actions
    C("gmail_compose", "Click Delete", E),  # only shown on hover
    C("gmail_compose", "Click Mark as read", E),
    C("gmail_compose", "Click the Settings icon", "settings", "click"),
    C("gmail_compose", "Click Drafts", "nav-drafts", "click"),
    C("gmail_compose", "Go to Inbox", "nav-inbox", "click"),
    C("gmail_compose", "Click the Promotions tab", "tab-promotions", "click"),
    C("gmail_compose", "Click Refresh", "refresh", "click"),
    C("gmail_compose", "Click the Advanced search options button", "adv-search", "click"),
    C("gmail_compose", "Click Snooze", E),  # only a "Snoozed" folder
    C("gmail_compose", "Type the company name into the Subject field", E),  # a description
    C("gmail_compose", "Type the subject into the Subject field", "compose-subject", "fill",
      "{{subject}}", {"subject": "Q3 follow-up"}),
    C("gmail_compose", "Click Cc", "compose-cc", "click"),
    C("gmail_compose", "Click Schedule send", E),
    # ---- HubSpot contact record with the "Create Deal" modal open (app root aria-hidden)
    C("hubspot_record_modal", "Type {{deal_name}} into the Deal name field", "m-dealname", "fill",
      "{{deal_name}}"),
    C("hubspot_record_modal", "Enter {{amount}} in the Amount field", "m-amount", "fill",
      "{{amount}}"),
    C("hubspot_record_modal", "Type Priya into the First name field", E),  # behind the modal
    C("hubspot_record_modal", "Type Priya into the Contact first name field", "m-contact-first",
      "fill", "Priya"),
    C("hubspot_record_modal", "Select Partnerships from the Pipeline dropdown", "m-pipeline",
      "select", "Partnerships"),
    C("hubspot_record_modal", "Set the Deal stage to Contract sent", "m-stage", "select",
      "Contract sent"),
    C("hubspot_record_modal", "Choose Grace Hopper as the Deal owner", "m-owner", "select",
      "Grace Hopper"),
    C("hubspot_record_modal", "Click Create", "m-create", "click"),
    C("hubspot_record_modal", "Click Create and add another", "m-create-another", "click"),
    C("hubspot_record_modal", "Click Cancel", "m-cancel", "click"),
    C("hubspot_record_modal", "Close the dialog", "m-close", "click"),
    C("hubspot_record_modal", "Click the Save button", E),  # behind the modal
    C("hubspot_record_modal", "Click + Add under Deals", E),  # behind the modal
    C("hubspot_record_modal", "Click the Activities tab", E),
    C("hubspot_record_modal", "Type 05/01/2027 into the Close date field", "m-closedate", "fill",
      "05/01/2027"),
    C("hubspot_record_modal", "Enter {{company}} in the Company name field", E),
    C("hubspot_record_modal", "Type the deal name into the Deal name field", "m-dealname",
      "fill", "{{deal_name}}", {"deal_name": "Acme renewal"}),
    C("hubspot_record_modal", "Type the amount into the Amount field", E),  # no such variable
    C("hubspot_record_modal", "Select Closed lost from the Deal stage dropdown", E),
    C("hubspot_record_modal", "Click the Email button", E),  # behind the modal
    # ---- the same record without the modal
    C("hubspot_record", "Click + Add under Deals", "bg-add-deal", "click"),
    C("hubspot_record", "Click + Add under Companies", "bg-add-company", "click"),
    C("hubspot_record", "Click + Add", E),  # two of them
    C("hubspot_record", "Type Priya into the First name field", "bg-firstname", "fill", "Priya"),
    C("hubspot_record", "Type {{company}} into the Company name field", "bg-company", "fill",
      "{{company}}", {"company": "Back to Basics Bakery"}),
    C("hubspot_record", "Type Back to Basics Bakery into the Company name field", "bg-company",
      "fill", "Back to Basics Bakery"),
    C("hubspot_record", "Click the Email button", "bg-email", "click"),
    C("hubspot_record", "Enter priya@brightpath.io in the Email field", "bg-emailfield", "fill",
      "priya@brightpath.io"),
    C("hubspot_record", "Click the Overview tab", "bg-tab-overview", "click"),
    C("hubspot_record", "Click Save", "bg-save", "click"),
    C("hubspot_record", "Open the Brightpath company", "bg-company-link", "click"),
    C("hubspot_record", "Go back to Contacts", "bg-back", "click"),
    C("hubspot_record", "Type {{phone}} into the Phone number field", "bg-phone", "fill",
      "{{phone}}"),
    C("hubspot_record", "Click Log a call", E),
    C("hubspot_record", "Type {{title}} into the Job title field", E),
    # ---- Airtable grid
    C("airtable_grid", "Click the Firm cell for Marcus Webb", "c-marcus-firm", "click"),
    C("airtable_grid", "Click the Stage cell for Sarah Chen", "c-sarah-stage", "click"),
    C("airtable_grid", "Click the Email cell for Lena Park", "c-lena-email", "click"),
    C("airtable_grid", "Click the Firm cell for Foundry Group", E),  # two rows
    C("airtable_grid", "Click the Firm cell for John Doe", E),
    C("airtable_grid", "Click Views", "views", "click"),
    C("airtable_grid", "Click the Toggle sidebar button", "views", "click"),
    C("airtable_grid", "Click Filter", "filter", "click"),
    C("airtable_grid", "Click Sort", "sort", "click"),
    C("airtable_grid", "Click Hide fields", "hide-fields", "click"),
    C("airtable_grid", "Click the Share button", "share", "click"),
    C("airtable_grid", "Click the Meetings tab", "tab-meetings", "click"),
    C("airtable_grid", "Click the Add record button", "add-record", "click"),
    C("airtable_grid", "Click the search icon", "search-toggle", "click"),
    C("airtable_grid", "Click Export CSV", E),
    C("airtable_grid", "Click Foundry Group", E),
    C("airtable_grid", "Click Grid view", "view-name", "click"),
    # ---- Okta sign-in widget
    C("okta_signin", "Type {{username}} into the Username field", "username", "fill",
      "{{username}}"),
    C("okta_signin", "Type {{password}} into the Password field", "password", "fill",
      "{{password}}"),
    C("okta_signin", "Check Remember me", "remember", "check"),
    C("okta_signin", "Tick the Remember me box", "remember", "check"),
    C("okta_signin", "Click Sign In", "signin", "click"),
    C("okta_signin", "Click the Sign In button", "signin", "click"),
    C("okta_signin", "Log in", "signin", "click"),
    C("okta_signin", "Sign in with Google", "google", "click"),
    C("okta_signin", "Sign in with Microsoft", "microsoft", "click"),
    C("okta_signin", "Sign in with Okta Verify", E),
    C("okta_signin", "Click Need help signing in?", "need-help", "click"),
    C("okta_signin", "Click Forgot password?", E),  # collapsed help links
    C("okta_signin", "Click Show password", "show-password", "click"),
    C("okta_signin", "Enter {{email}} in the Email field", E),
    C("okta_signin", "Type the password into the Password field", "password", "fill",
      "{{password}}", {"password": "correct horse"}),
    # ---- Amazon registration ("Mobile number or email" next to "Phone (optional)")
    C("amazon_signup", "Type {{name}} into the Your name field", "name", "fill", "{{name}}"),
    C("amazon_signup", "Enter {{phone}} in the Mobile phone number field", E),
    C("amazon_signup", "Type {{email}} into the Email field", "email", "fill", "{{email}}"),
    C("amazon_signup", "Type {{email}} into the Mobile number or email field", "email", "fill",
      "{{email}}"),
    C("amazon_signup", "Enter {{phone}} in the Phone field", "phone", "fill", "{{phone}}"),
    C("amazon_signup", "Type {{password}} into the Password field", "password", "fill",
      "{{password}}"),
    C("amazon_signup", "Type {{password}} into the Re-enter password field", "password-check",
      "fill", "{{password}}"),
    C("amazon_signup", "Click Continue", "continue", "click"),
    C("amazon_signup", "Click Sign in", "signin", "click"),
    C("amazon_signup", "Click Conditions of Use", "conditions", "click"),
    C("amazon_signup", "Click the Create account button", E),  # only a heading says that
    C("amazon_signup", "Type the customer's name into the Your name field", "name", "fill",
      "{{customer_name}}", {"customer_name": "Ada Lovelace"}),
    C("amazon_signup", "Click Privacy Notice", "privacy", "click"),
    C("amazon_signup", "Click Create a free business account", "business", "click"),
    # ---- settings: switches, visually hidden checkboxes and radios, labels without for=
    C("settings_switches", "Enter ada_l as the display name", "display-name", "fill", "ada_l"),
    C("settings_switches", "Type {{bio}} into the Bio field", "bio", "fill", "{{bio}}"),
    C("settings_switches", "Select (GMT+01:00) Paris from the Time zone dropdown", "timezone",
      "select", "(GMT+01:00) Paris"),
    C("settings_switches", "Select Français from the Language dropdown", "language", "select",
      "Français"),
    C("settings_switches", "Select Spanish from the Language dropdown", E),  # no such option
    C("settings_switches", "Turn on Mentions", E),  # email and push both have one
    C("settings_switches", "Turn on Mentions under Email notifications", "sw-mentions", "check"),
    C("settings_switches", "Turn off Mentions in Push notifications", "sw-push-mentions",
      "uncheck"),
    C("settings_switches", "Turn off the Weekly digest toggle", "sw-weekly", "uncheck"),
    C("settings_switches", "Toggle off Weekly digest", "sw-weekly", "uncheck"),
    C("settings_switches", "Uncheck Product updates and announcements", "cb-product", "uncheck"),
    C("settings_switches", "Disable product updates", "cb-product", "uncheck"),
    C("settings_switches", "Check Do not disturb on weekends", "cb-dnd", "check"),
    C("settings_switches", "Choose the Dark theme", "r-dark", "click"),
    C("settings_switches", "Click the Dark option", "r-dark", "click"),
    C("settings_switches", "Select Sync with system", "r-system", "click"),
    C("settings_switches", "Click Save changes", "save", "click"),
    C("settings_switches", "Click Delete account", E),  # disabled
    C("settings_switches", "Turn on Security alerts", E),  # disabled
    C("settings_switches", "Click Billing and plans", "nav-billing", "click"),
    C("settings_switches", "Go to Notifications", "nav-notifications", "click"),
    C("settings_switches", "Click Cancel", "cancel", "click"),
    C("settings_switches", "Turn on Desktop notifications", E),
    # ---- search results
    C("search_results", "Type {{query}} into the search box", "q", "fill", "{{query}}"),
    C("search_results", "Click the Search button", "submit", "click"),
    C("search_results", "Open the Crunchbase result", "r-crunchbase", "click"),
    C("search_results", "Open the LinkedIn result", E),  # a person and a company page
    C("search_results", "Click the first result", "r-linkedin", "click"),
    C("search_results", "Click the second result", "r-team", "click"),
    C("search_results", "Go to page 2", "page-2", "click"),
    C("search_results", "Go to page 7", E),
    C("search_results", "Click Next", "next", "click"),
    C("search_results", "Click the Images tab", "f-images", "click"),
    C("search_results", "Click News", "f-news", "click"),
    C("search_results", "Click Tools", "tools", "click"),
    C("search_results", "Click About this result", E),  # one per result
    C("search_results", "Click About this result for Crunchbase", "r-crunchbase-about", "click"),
    C("search_results", "Expand Who founded Brightpath?", "paa-1", "click"),
    C("search_results", "Click Careers", "r-team-careers", "click"),
    C("search_results", "Clear the search box", "q", "fill", ""),
    C("search_results", "Click Shopping", E),
    C("search_results", "Click the Clear button", "clear", "click"),
    C("search_results", "Click Search by voice", "voice", "click"),
    # ---- Shopify checkout
    C("shopify_checkout", "Type {{email}} into the Email field", "email", "fill", "{{email}}"),
    C("shopify_checkout", "Enter {{phone}} in the Mobile phone number field", E),  # or Phone?
    C("shopify_checkout", "Check Email me with news and offers", "news", "check"),
    C("shopify_checkout", "Select France from the Country/Region dropdown", "country", "select",
      "France"),
    C("shopify_checkout", "Select France from the Country dropdown", "country", "select",
      "France"),
    C("shopify_checkout", "Type Ada into the First name field", "first-name", "fill", "Ada"),
    C("shopify_checkout", "Type Lovelace into the Last name field", "last-name", "fill",
      "Lovelace"),
    C("shopify_checkout", "Enter {{address}} in the Address field", "address", "fill",
      "{{address}}"),
    C("shopify_checkout", "Type {{city}} into the City field", "city", "fill", "{{city}}"),
    C("shopify_checkout", "Select New York from the State dropdown", "state", "select",
      "New York"),
    C("shopify_checkout", "Type 10001 into the ZIP code field", "zip", "fill", "10001"),
    C("shopify_checkout", "Type {{phone}} into the Phone field", "phone", "fill", "{{phone}}"),
    C("shopify_checkout", "Enter {{code}} in the Discount code field", "discount", "fill",
      "{{code}}"),
    C("shopify_checkout", "Type {{code}} into the Gift card field", "discount", "fill",
      "{{code}}"),
    C("shopify_checkout", "Click Apply", E),  # disabled until a code is typed
    C("shopify_checkout", "Select Express", "rate-express", "click"),
    C("shopify_checkout", "Click Pay now", "pay-now", "click"),
    C("shopify_checkout", "Click Return to cart", "return-cart", "click"),
    C("shopify_checkout", "Click Log in", "login", "click"),
    C("shopify_checkout", "Check Save this information for next time", "save-info", "check"),
    C("shopify_checkout", "Click PayPal", "paypal", "click"),
    C("shopify_checkout", "Type Back to Basics Bakery into the Company field", "company", "fill",
      "Back to Basics Bakery"),
    C("shopify_checkout", "Type {{company}} in the Company field", "company", "fill",
      "{{company}}", {"company": "Back to Basics Bakery"}),
    C("shopify_checkout", "Click Continue to shipping", E),
    C("shopify_checkout", "Select Germany from the Country/Region dropdown", E),
    C("shopify_checkout", "Type the shipping address into the Address field", E),
    # ---- GitHub repository
    C("github_repo", "Click the Star button", "star", "click"),
    C("github_repo", "Star the repository", "star", "click"),
    C("github_repo", "Click Fork", "fork", "click"),
    C("github_repo", "Click the Issues tab", "tab-issues", "click"),
    C("github_repo", "Go to Pull requests", "tab-prs", "click"),
    C("github_repo", "Open Settings", "tab-settings", "click"),
    C("github_repo", "Click Watch", "watch", "click"),
    C("github_repo", "Click Go to file", "go-to-file", "click"),
    C("github_repo", "Open the README.md file", "f-readme", "click"),
    C("github_repo", "Click src", "f-src", "click"),
    C("github_repo", "Click Bump version", E),  # two commits say so
    C("github_repo", "Click Add file", "add-file", "click"),
    C("github_repo", "Click the Code button", "code-btn", "click"),
    C("github_repo", "Click Code", E),  # the tab and the button
    C("github_repo", "Click Pin", "pin", "click"),
    C("github_repo", "Click New issue", E),
    C("github_repo", "Click 4 Branches", "branches", "click"),
    C("github_repo", "Click the MIT license link", "license", "click"),
    C("github_repo", "Click Search or jump to", "global-search", "click"),
    C("github_repo", "Click All Activity", E),  # inside a closed menu
    C("github_repo", "Click Sponsor", E),
    # ---- Jira "Create issue" modal over the board
    C("jira_create_modal", "Type {{summary}} into the Summary field", "m-summary", "fill",
      "{{summary}}"),
    C("jira_create_modal", "Type {{description}} into the Description field", "m-description",
      "fill", "{{description}}"),
    C("jira_create_modal", "Select Bug from the Issue type dropdown", "m-issuetype", "select",
      "Bug"),
    C("jira_create_modal", "Set the Project to Web (WEB)", "m-project", "select", "Web (WEB)"),
    C("jira_create_modal", "Select API Sprint 15 from the Sprint dropdown", "m-sprint", "select",
      "API Sprint 15"),
    C("jira_create_modal", "Click Assign to me", "m-assign-me", "click"),
    C("jira_create_modal", "Click Create", "m-create", "click"),
    C("jira_create_modal", "Check Create another issue", "m-another", "check"),
    C("jira_create_modal", "Click Cancel", "m-cancel", "click"),
    C("jira_create_modal", "Close the dialog", "m-close", "click"),
    C("jira_create_modal", "Click the Bold button", "m-bold", "click"),
    C("jira_create_modal", "Type api into the Labels field", "m-labels", "fill", "api"),
    C("jira_create_modal", "Enter {{assignee}} in the Assignee field", "m-assignee", "fill",
      "{{assignee}}"),
    C("jira_create_modal", "Click the API-101 card", E),  # behind the modal
    C("jira_create_modal", "Click Your work", E),
    C("jira_create_modal", "Type {{q}} into the Search field", E),
    C("jira_create_modal", "Select Epic from the Issue type dropdown", E),
    C("jira_create_modal", "Click Projects", E),
    # ---- Google Forms
    C("google_forms", "Type {{name}} into the Full name field", "full-name", "fill", "{{name}}"),
    C("google_forms", "Enter {{email}} in the Work email field", "work-email", "fill",
      "{{email}}"),
    C("google_forms", "Type {{company}} into the Company field", "company", "fill",
      "{{company}}"),
    C("google_forms", "Select Friend or colleague", "hear-friend", "click"),
    C("google_forms", "Choose Search engine for How did you hear about us?", "hear-search",
      "click"),
    C("google_forms", "Check API", "prod-api", "check"),
    C("google_forms", "Check Webhooks", "prod-webhooks", "check"),
    C("google_forms", "Tick Analytics", "prod-analytics", "check"),
    C("google_forms", "Select 11-50 from the Company size dropdown", "size", "select", "11-50"),
    C("google_forms", "Click Submit", "submit", "click"),
    C("google_forms", "Click Clear form", "clear-form", "click"),
    C("google_forms", "Type {{notes}} into the Anything else? field", "anything-else", "fill",
      "{{notes}}"),
    C("google_forms", "Check Mobile SDK", E),
    C("google_forms", "Choose Other", "hear-other", "click"),
    C("google_forms", "Type {{phone}} into the Phone number field", E),
    # ---- Zendesk ticket
    C("zendesk_ticket", "Select Urgent from the Priority dropdown", "priority", "select",
      "Urgent"),
    C("zendesk_ticket", "Set Type to Incident", "type", "select", "Incident"),
    C("zendesk_ticket", "Type {{reply}} into the Public reply composer", "composer", "fill",
      "{{reply}}"),
    C("zendesk_ticket", "Click the Internal note tab", "tab-internal", "click"),
    C("zendesk_ticket", "Click Submit as Open", "submit-open", "click"),
    C("zendesk_ticket", "Click take it", "take-it", "click"),
    C("zendesk_ticket", "Remove the billing tag", "tag-billing-x", "click"),
    C("zendesk_ticket", "Click Apply macro", "apply-macro", "click"),
    C("zendesk_ticket", "Attach a file", "attach", "click"),
    C("zendesk_ticket", "Type Lena into the Requester field", "requester", "fill", "Lena"),
    C("zendesk_ticket", "Click Reporting", "nav-reporting", "click"),
    C("zendesk_ticket", "Click Close tab", "close-tab", "click"),
    C("zendesk_ticket", "Click Solve", E),
    C("zendesk_ticket", "Type billing into the Tags field", "tags", "fill", "billing"),
    C("zendesk_ticket", "Enter {{cc}} in the CC field", E),
    C("zendesk_ticket", "Click the Views icon", "nav-views", "click"),
    C("zendesk_ticket", "Select Critical from the Priority dropdown", E),
    C("zendesk_ticket", "Type the customer's reply into the Public reply composer", E),
    # ---- Outlook message list
    C("outlook_inbox", "Open the first unread email", "m-sarah", "click"),
    C("outlook_inbox", "Open the last unread email", "m-priya", "click"),
    C("outlook_inbox", "Open the email from Marcus Webb", "m-marcus", "click"),
    C("outlook_inbox", "Open the email from Sarah Chen", E),  # two of them
    C("outlook_inbox", "Mark the email from Priya Raman as read", "m-priya-read", "click"),
    C("outlook_inbox", "Flag the email from Marcus Webb", "m-marcus-flag", "click"),
    C("outlook_inbox", "Flag the email from Sarah Chen", E),
    C("outlook_inbox", "Click New mail", "new-mail", "click"),
    C("outlook_inbox", "Click Delete", E),  # disabled
    C("outlook_inbox", "Click Archive", E),  # the disabled action and the folder
    C("outlook_inbox", "Click the Junk Email folder", "f-junk", "click"),
    C("outlook_inbox", "Click Sent Items", "f-sent", "click"),
    C("outlook_inbox", "Click Filter", "filter", "click"),
    C("outlook_inbox", "Go to Drafts", "f-drafts", "click"),
    C("outlook_inbox", "Open the email from Jane Doe", E),
    C("outlook_inbox", "Go back", "back", "back"),
]

# Pages added after the resolver was tuned (written blind, then kept as regression cases).
CASES += [
    # ---- Salesforce Lightning lead record
    C("salesforce_lead", "Click Edit", "edit", "click"),
    C("salesforce_lead", "Click Convert", "convert", "click"),
    C("salesforce_lead", "Click Change Owner", "change-owner", "click"),
    C("salesforce_lead", "Click Follow", "follow", "click"),
    C("salesforce_lead", "Click the Details tab", "tab-details", "click"),
    C("salesforce_lead", "Click Log a Call", "log-call", "click"),
    C("salesforce_lead", "Click New Task", "new-task", "click"),
    C("salesforce_lead", "Click Nurturing", "path-nurturing", "click"),
    C("salesforce_lead", "Click Mark Status as Complete", "mark-complete", "click"),
    C("salesforce_lead", "Click the App Launcher", "app-launcher", "click"),
    C("salesforce_lead", "Go to Opportunities", "nav-opps", "click"),
    C("salesforce_lead", "Click Edit Company", "edit-company", "click"),
    C("salesforce_lead", "Click the pencil icon next to Lead Status", "edit-status", "click"),
    C("salesforce_lead", "Click Email", "email", "click"),  # the link is named by the address
    C("salesforce_lead", "Click Delete", E),  # inside the closed "more actions" menu
    C("salesforce_lead", "Click Submit for Approval", E),
    C("salesforce_lead", "Click the Search button", "global-search", "click"),
    C("salesforce_lead", "Click Setup", "setup", "click"),
    # ---- Slack channel
    C("slack_channel", "Type {{message}} into the message box", "composer", "fill",
      "{{message}}"),
    C("slack_channel", "Click Send now", E),  # disabled until something is typed
    C("slack_channel", "Open the #random channel", "ch-random", "click"),
    C("slack_channel", "Click deals", "ch-deals", "click"),
    C("slack_channel", "Open the direct message with Sarah Chen", "dm-sarah", "click"),
    C("slack_channel", "Click Threads", "threads", "click"),
    C("slack_channel", "Click 3 replies", "msg-sarah-replies", "click"),
    C("slack_channel", "Click Reply in thread", E),  # hover-only, and one per message
    C("slack_channel", "Click Add channels", "add-channels", "click"),
    C("slack_channel", "Click the Huddle button", "huddle", "click"),
    C("slack_channel", "Click Search Acme", "search", "click"),
    C("slack_channel", "Click the Attach button", "attach", "click"),
    C("slack_channel", "Click Forward", E),  # aria-disabled
    C("slack_channel", "Click Sarah Chen", E),  # the sender link and the direct message
    C("slack_channel", "Click Help", "help", "click"),
    C("slack_channel", "Click the Channel details button", "channel-details", "click"),
    # ---- Stripe payments list
    C("stripe_payments", "Click + Create payment", "create-payment", "click"),
    C("stripe_payments", "Click Create payment", "create-payment", "click"),
    C("stripe_payments", "Click the Refunded tab", "t-refunded", "click"),
    C("stripe_payments", "Click Export", "export", "click"),
    C("stripe_payments", "Type {{email}} into the search field", "search", "fill", "{{email}}"),
    C("stripe_payments", "Click Next", "next", "click"),
    C("stripe_payments", "Click Previous", E),  # disabled
    C("stripe_payments", "Turn on Test mode", "test-mode", "check"),
    C("stripe_payments", "Click More options", E),  # one per row
    C("stripe_payments", "Click More options for marcus.webb@foundry.com", "p2-more", "click"),
    C("stripe_payments", "Open the payment from lena@foundry.com", "p3-amount", "click"),
    C("stripe_payments", "Click the Status filter", "f-status", "click"),
    C("stripe_payments", "Click Customers", "nav-customers", "click"),
    C("stripe_payments", "Check Select all payments", "select-all", "check"),
    C("stripe_payments", "Click Refund payment", E),
    C("stripe_payments", "Click $89.00", "p2-amount", "click"),
]

CASES += [
    # ---- Google Calendar: event dialog shown with showModal()
    C("calendar_event_dialog", "Type {{title}} into the title field", "title", "fill",
      "{{title}}"),
    C("calendar_event_dialog", "Click Add title", "title", "click"),
    C("calendar_event_dialog", "Type {{guest}} into the Add guests field", "guests", "fill",
      "{{guest}}"),
    C("calendar_event_dialog", "Enter {{room}} as the location", "location", "fill", "{{room}}"),
    C("calendar_event_dialog", "Check All day", "all-day", "check"),
    C("calendar_event_dialog", "Click Add Google Meet video conferencing", "add-meet", "click"),
    C("calendar_event_dialog", "Click Save", "save", "click"),
    C("calendar_event_dialog", "Click More options", "more-options", "click"),
    C("calendar_event_dialog", "Click the Task tab", "tab-task", "click"),
    C("calendar_event_dialog", "Click the start time", "start-time", "click"),
    C("calendar_event_dialog", "Close the dialog", "close", "click"),
    C("calendar_event_dialog", "Click Today", E),  # behind the modal dialog
    C("calendar_event_dialog", "Click Next week", E),
    C("calendar_event_dialog", "Click Create", E),
    C("calendar_event_dialog", "Type {{notes}} into the description", "description", "fill",
      "{{notes}}"),
    # ---- LinkedIn people search
    C("linkedin_search", "Click Connect", "r-priya-connect", "click"),
    C("linkedin_search", "Click Message", "r-sarah-message", "click"),
    C("linkedin_search", "Message Sarah Chen", "r-sarah-message", "click"),
    C("linkedin_search", "Follow Marcus Webb", "r-marcus-follow", "click"),
    C("linkedin_search", "Invite Priya Raman to connect", "r-priya-connect", "click"),
    C("linkedin_search", "Click Priya Raman", "r-priya", "click"),
    C("linkedin_search", "Open Sarah Chen's profile", "r-sarah", "click"),
    C("linkedin_search", "Click the Companies filter", "f-companies", "click"),
    C("linkedin_search", "Click All filters", "f-all", "click"),
    C("linkedin_search", "Go to page 2", "p2", "click"),
    C("linkedin_search", "Click Previous", E),  # disabled
    C("linkedin_search", "Click My Network", "nav-network", "click"),
    C("linkedin_search", "Go to Jobs", "nav-jobs", "click"),
    C("linkedin_search", "Type {{query}} into the search bar", "search", "fill", "{{query}}"),
    C("linkedin_search", "Click Compose message", "msg-compose", "click"),
    C("linkedin_search", "Connect with Sarah Chen", E),  # she has no Connect button here
    C("linkedin_search", "Click Easy Apply", E),
]

# Regression cases for the risks found while building (each a class, not a page).
CASES += [
    C("gmail_compose", "Open the first email", "row-sarah|row-sarah-subject", "click"),
    C("gmail_compose", "Open the second email", "row-marcus|row-marcus-subject", "click"),
    C("outlook_inbox", "Open the first email", "m-sarah", "click"),
    C("outlook_inbox", "Click Flag", E),  # one per message
    C("gmail_compose", "Click Discard", E),  # a lone destructive verb is never a prefix match
    C("stripe_payments", "Click Refund", E),
    C("settings_switches", "Click Delete", E),
    C("hubspot_record_modal", "Click Projects", E),
    C("jira_create_modal", "Click Projects", E),  # "Project" field: a plural is not exact
    C("linkedin_search", "Click Priya Raman", "r-priya", "click"),
]
